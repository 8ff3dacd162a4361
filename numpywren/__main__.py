import sys

from numpywren.cli import main

sys.exit(main())
