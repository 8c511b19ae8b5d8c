"""``python -m cad`` and the ``cad`` command."""

from cad.settings import configure_numba_cache


def main() -> None:
    # Before cad.cli imports routing: numba fixes each kernel's cache directory then.
    configure_numba_cache()
    from cad.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
