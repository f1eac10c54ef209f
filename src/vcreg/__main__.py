"""``python -m vcreg`` (used by ``torchrun -m vcreg train ...``)."""

from vcreg.cli import main

if __name__ == "__main__":
    main()
