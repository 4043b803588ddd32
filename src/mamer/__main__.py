import sys

from mamer.cli import main

sys.exit(main())
