"""The documented entry point, run from the repository root:

    accelerate launch --dynamo_backend=inductor --num_processes=8 --num_machines=1 --machine_rank=0 \
        --deepspeed_multinode_launcher standard --mixed_precision=bf16 --use_deepspeed \
        --deepspeed_config_file=configs/deepspeed/ds_config_gptj.json \
        train.py --config configs/train/finetune_gptj.yaml

Options: --config FILE, --set key=value (repeatable), --resume [latest|step_N dir] (the config's
`checkpoint` key does the same). The loop is `gpt4allj_kit.train.loop`; `gpt4allj-kit train` builds and
runs this command for you, with `--config OUTPUT_DIR/train_config.yaml`: the config it resolved (profile,
--set, paths) and wrote there.
"""

import sys
from pathlib import Path

try:
    import gpt4allj_kit  # noqa: F401
except ImportError:  # a plain checkout without the kit installed
    sys.path.insert(0, str(Path(__file__).resolve().parent / "cli"))

from gpt4allj_kit.train.loop import main

if __name__ == "__main__":
    sys.exit(main())
