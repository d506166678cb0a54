import sys

from edgevos.cli import main

sys.exit(main())
