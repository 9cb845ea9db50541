import sys

from lens_steer.cli import main

sys.exit(main())
