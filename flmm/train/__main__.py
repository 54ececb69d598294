"""``python -m flmm.train CONFIG`` / ``accelerate launch -m flmm.train CONFIG``: run a training recipe."""

import sys

from flmm.recipes.run import main

if __name__ == "__main__":
    sys.exit(main())
