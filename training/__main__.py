"""`python -m training` / `torchrun --nproc_per_node=N -m training`: train with lakebert's config.

    python -m training --env local --set train.epochs=2
    torchrun --nproc_per_node=2 -m training --set lakehouse.root=/shared/lakehouse

The last stdout line of rank 0 is the JSON result (metrics, steps, best checkpoint, data).
"""

import argparse
import json
import os
import sys

from conf import ConfigError, load_config, redact
import storage
from training.train import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    parser.add_argument("--env", default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(env=args.env, overrides=args.overrides, config_file=args.config)
    except ConfigError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return 2
    storage.configure(cfg.spark.conf)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        # without the history and throughput intervals: all of it is in <output_dir>/result.json
        print(json.dumps(redact(result.to_summary(), by_key=False)), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # After a clean destroy_process_group, about one torchrun job in eight still aborted at
        # interpreter exit here ("terminate called without an active exception", a C++ thread
        # torn down by static destructors; not reproduced with plain gloo collectives). The work
        # is done and flushed by now, so leave without running those destructors.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
