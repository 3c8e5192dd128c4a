"""``python -m model sample ...``"""

import sys

from model.cli import main

sys.exit(main())
