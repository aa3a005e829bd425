"""`pcl device_query`: show the GPU that --gpu would use (Caffe's `caffe device_query`)."""
import click

from .. import device


@click.command("device_query")
@click.option("--gpu", default="0", show_default=True, help="GPU device id to query.")
def command(gpu):
    """Print facts about a GPU device."""
    for gpu_id in gpu.split(","):
        device.set_device(int(gpu_id))
        for key, value in device.device_query().items():
            click.echo(f"{key}: {value}")
