import sys

from vidforge.cli import main

sys.exit(main())
