"""How every stage and command ends: a user's mistake as one `error:` line, Ctrl-C as exit status
130."""

import os
import signal
import sys


class UserError(Exception):
    """A problem the user can fix; reported as one line, without a traceback."""


def run_main(main) -> None:
    """Run main(), turning a UserError into one clear line and exit status 2, and Ctrl-C into exit
    status 130.

    DEBUG=1 in the environment shows the traceback as well. A process started with Ctrl-C ignored (a
    background job of a non-interactive shell, a queue worker) would inherit that and train on
    through the user's Ctrl-C or `dvc queue kill`, so the default handler is put back first.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except UserError as error:
        if os.environ.get("DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; nothing half-written was left: run it again", file=sys.stderr)
        sys.exit(130)
