"""The `pcl` command: a click group whose subcommands live in pycaffelite/commands/.

Each module there defines one click command named `command`, listed under the module's name and
imported only when that command runs or help lists it (`pcl train` does not import what the other
commands need: tqdm, summary tables, ...). Caffe's single-dash long flags (`-solver x`, `-gpu=0`)
are accepted by rewriting them to the double-dash form before click parses them. A PclError (user
mistake) ends in one message on stderr and exit status 1, never a traceback; so does an exception
raised in the user's own Python layer code, which carries a description of where it happened. That
message also ends the log files of the run (GLOG_log_dir, `pcl train --log`), which are closed when
the command returns.
"""
import importlib
import logging
import pkgutil
import re
import sys

import click

from . import commands, training_log
from .errors import USER_CODE_ATTRIBUTE, PclError

_SINGLE_DASH_LONG_FLAG = re.compile(r"^-([a-z][a-z0-9_]+)(=.*)?$")


def caffe_style_args(args):
    """Rewrite `-name[=value]` (Caffe/gflags style) to `--name[=value]`."""
    return [f"-{a}" if _SINGLE_DASH_LONG_FLAG.match(a) else a for a in args]


class _LazyGroup(click.Group):
    """The commands of pycaffelite/commands/, each module imported on first use."""

    def list_commands(self, ctx):
        return sorted(info.name for info in pkgutil.iter_modules(commands.__path__))

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.list_commands(ctx):
            return None
        return importlib.import_module(f"{commands.__name__}.{cmd_name}").command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pycaffelite")
def pcl():
    """Train, test and time Caffe nets described in prototxt files."""


def main(argv=None):
    args = caffe_style_args(sys.argv[1:] if argv is None else list(argv))
    try:
        _run(args)
    finally:
        training_log.close_log_files()


def _fail(message):
    """End with one message on stderr (and in the run's log files, if any), exit status 1."""
    click.echo(f"pcl: error: {message}", err=True)
    training_log.write_to_log_files(logging.ERROR, f"pcl: error: {message}")
    sys.exit(1)


def _run(args):
    try:
        pcl.main(args=args, prog_name="pcl", standalone_mode=False)
    except PclError as exc:
        _fail(exc)
    except click.exceptions.Abort:
        click.echo("pcl: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # An exception raised by the user's own code (a Python layer) carries a description of
        # where it happened; anything else is a bug of ours and keeps its traceback.
        where = getattr(exc, USER_CODE_ATTRIBUTE, None)
        if where is None:
            raise
        _fail(where)

if __name__ == "__main__":
    main()
