"""``python -m tests.bench``: run the benchmark and write ``results.md`` + ``results.json``."""

from tests.bench.run import main

if __name__ == "__main__":
    main()
