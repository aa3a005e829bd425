"""Subcommands of `pcl`: one module per command, each defining a click command named `command`."""
import click


def log_line(text):
    """A status line on stderr, where Caffe's tools log (stdout stays free for data and --json)."""
    click.echo(text, err=True)
