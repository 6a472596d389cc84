"""The ``visionkit`` command: a LightningCLI with visionkit's tasks, datamodules and trainer defaults.

``visionkit --help`` and ``--version`` are answered without importing torch or Lightning.
"""

from __future__ import annotations

import sys
from typing import Any

from visionkit import __version__
from visionkit.errors import ConfigValueError, VisionkitError, exit_on_user_error

TOP_HELP = f"""usage: visionkit [-h] [--version] {{fit,validate,test,predict}} ...

visionkit {__version__}: train and evaluate vision models through their intermediate activations
(a LightningCLI; every subcommand takes --config FILE.yaml and dotted overrides).

subcommands:
  fit        train a task (--config configs/quickstart.yaml)
  validate   run the validation loop (--ckpt_path CKPT)
  test       run the test loop (--ckpt_path CKPT)
  predict    run prediction (--ckpt_path CKPT)

options:
  -h, --help   show this help and exit
  --version    print the version and exit

examples:
  visionkit fit --config configs/quickstart.yaml
  visionkit fit --config configs/quickstart.yaml --trainer.max_epochs 3 --model.init_args.lr 3.0e-3
  visionkit fit --model ClassificationTask --data DigitsDataModule --print_config
  visionkit fit --model.help ClassificationTask
  visionkit test --config configs/quickstart.yaml --ckpt_path logs/.../checkpoints/last.ckpt

Run 'visionkit fit --help' for every trainer, model and data option.
"""

#: Datamodule attributes copied into the task's constructor arguments of the same name.
LINKED_DATA_ATTRIBUTES = ("num_classes", "in_channels", "image_size")


def _build_cli_class() -> type:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from visionkit.core import trainer as defaults

    class VisionKitCLI(LightningCLI):
        """LightningCLI with data->model links, a task-aware checkpoint and visionkit trainer defaults."""

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            for attr in LINKED_DATA_ATTRIBUTES:
                parser.link_arguments(f"data.{attr}", f"model.init_args.{attr}", apply_on="instantiate")
            for key, cfg in defaults.callback_configs().items():
                parser.add_lightning_class_args(defaults.import_class(cfg["class_path"]), key)
                parser.set_defaults({f"{key}.{k}": v for k, v in cfg.get("init_args", {}).items()})
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({f"checkpoint.{k}": v for k, v in defaults.checkpoint_kwargs(None, "min").items()})

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            task_cls = defaults.import_class(config.model.class_path)
            if config.checkpoint.monitor is None:
                config.checkpoint.monitor = getattr(task_cls, "monitor", "val_loss")
                config.checkpoint.mode = getattr(task_cls, "mode", "min")
            for key, value in getattr(task_cls, "trainer_overrides", {}).items():
                config.trainer[key] = value
            _pin_logger_version(config.trainer.logger, task_cls.__name__)

        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
            from lightning.pytorch.callbacks import ProgressBar

            if config.get("enable_progress_bar") is False:  # the always-on Rich bar must not clash
                callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
            return super()._instantiate_trainer(config, callbacks)

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except (ValueError, TypeError, OSError) as err:
                root = _root_cause(err)
                if isinstance(root, VisionkitError):
                    raise root from err
                if isinstance(root, (ValueError, TypeError)):
                    raise ConfigValueError(str(root)) from err
                raise

    return VisionKitCLI


def _root_cause(err: BaseException) -> BaseException:
    """The outermost visionkit error in a chain, else the innermost exception.

    jsonargparse wraps errors raised by ``__init__`` in its own "Does not validate" message.
    """
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, VisionkitError):
            return err
        nxt = err.__cause__ or err.__context__
        if nxt is None:
            break
        err = nxt
    return err


def _pin_logger_version(loggers: Any, default_name: str) -> None:
    """Give every CSV/TensorBoard logger one shared name and ``version_N`` so they share a run folder."""
    from visionkit.core.trainer import next_version

    if not isinstance(loggers, list) or not loggers:
        return
    args = [lg.init_args for lg in loggers if hasattr(lg, "init_args") and "save_dir" in lg.init_args]
    if not args:
        return
    for a in args:
        if a.get("name") in (None, "default", "lightning_logs"):
            a["name"] = default_name
    first = args[0]
    if first.get("version") is None:
        version = f"version_{next_version(first['save_dir'], first['name'])}"
        for a in args:
            if a.get("version") is None and a.get("save_dir") == first["save_dir"] and a.get("name") == first["name"]:
                a["version"] = version


def _register_classes() -> None:
    """Import the modules whose classes the CLI offers by short name."""
    import visionkit.callbacks  # noqa: F401
    import visionkit.data.datamodules  # noqa: F401
    import visionkit.methods  # noqa: F401
    import visionkit.tasks  # noqa: F401


def cli(args: list[str] | None = None, run: bool = True) -> Any:
    """Build (and by default run) the CLI; returns the ``LightningCLI`` object."""
    from visionkit.core import trainer as defaults
    from visionkit.core.task import VisionTask
    from visionkit.data.datamodules import VisionDataModule

    _register_classes()
    cls = _build_cli_class()
    return cls(
        model_class=VisionTask,
        datamodule_class=VisionDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=defaults.trainer_defaults(),
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"version": __version__},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``visionkit`` and ``python -m visionkit``."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv == ["-h"] or argv == ["--help"]:
        print(TOP_HELP, end="")
        return
    if argv == ["--version"]:
        print(f"visionkit {__version__}")
        return
    with exit_on_user_error("visionkit"):
        cli(args)


if __name__ == "__main__":
    main()
