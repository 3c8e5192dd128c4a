"""``python -m train fit|validate|encode|export ...``"""

import sys

from train.cli import main

sys.exit(main())
