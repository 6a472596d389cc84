"""The ``visionkit`` command: a LightningCLI with visionkit's tasks, datamodules and trainer defaults.

``visionkit --help`` and ``--version`` are answered without importing torch or Lightning.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from visionkit import __version__
from visionkit.errors import ConfigValueError, VisionkitError, exit_on_user_error

if TYPE_CHECKING:
    from visionkit.core.checkpoints import CheckpointInfo

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

#: ``--ckpt_path`` values that Lightning resolves itself (no file to check here).
SPECIAL_CKPT_PATHS = ("best", "last", "hpc")


class ConfigKeyError(ConfigValueError):
    """The command line or a config file names an unknown option, or gives a value of the wrong type."""


class LinkedValueError(ConfigValueError):
    """A model value given explicitly that conflicts with the value the data links into the model."""


def _build_cli_class(claimed: list[Path]) -> type:
    """The CLI class; run folders it creates are appended to ``claimed`` (for clean-up on failure)."""
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from visionkit.callbacks.checkpoint import RunCheckpoint
    from visionkit.core import trainer as defaults
    from visionkit.core.checkpoints import CheckpointError, check_state_dict, read_checkpoint
    from visionkit.utils import runs

    class VisionKitParser(LightningArgumentParser):
        """A parser that reports a bad option in one line (with a close match) instead of printing its usage."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("allow_abbrev", False)  # '--trainer.max_epoch' must not pass as max_epochs
            super().__init__(*args, **kwargs)

        def error(self, message: str, ex: Exception | None = None) -> NoReturn:
            if not self.exit_on_error:  # an inner parse whose error the caller handles
                super().error(message, ex)
            raise ConfigKeyError(explain_parse_error(message, _option_keys(self))) from ex

    class VisionKitCLI(LightningCLI):
        """LightningCLI with data->model links, a task-aware checkpoint, run folders and visionkit trainer defaults."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.explicit_links: dict[str, Any] = {}
            self.ckpt: CheckpointInfo | None = None
            self.resumed_run: Path | None = None
            super().__init__(*args, parser_class=VisionKitParser, **kwargs)

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            for attr in LINKED_DATA_ATTRIBUTES:
                parser.link_arguments(
                    f"data.{attr}", f"model.init_args.{attr}", compute_fn=self._check_linked(attr), apply_on="instantiate"
                )
            for key, cfg in defaults.callback_configs().items():
                parser.add_lightning_class_args(defaults.import_class(cfg["class_path"]), key)
                parser.set_defaults({f"{key}.{k}": v for k, v in cfg.get("init_args", {}).items()})
            parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
            parser.set_defaults({f"checkpoint.{k}": v for k, v in defaults.checkpoint_kwargs(None, "min").items()})

        def _check_linked(self, attr: str) -> Any:
            def link(value: Any) -> Any:
                given = self.explicit_links.get(attr)
                if given is not None and _plain(given) != _plain(value):
                    raise LinkedValueError(
                        f"model.init_args.{attr}={given} conflicts with the data's {attr}={value} (the CLI links "
                        f"data.{attr} into the model); drop model.init_args.{attr} or set it to {value}"
                    )
                return value

            return link

        def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
            from jsonargparse import Namespace

            super().parse_arguments(parser, args)
            if isinstance(args, (dict, Namespace)):
                given = parser.parse_object(args, defaults=False)
            else:
                given = parser.parse_args(args, defaults=False)  # only what config files and the command line set
            self.explicit_links = _explicit_links(given)

        def _parse_ckpt_path(self) -> None:
            subcommand = self.config.get("subcommand")
            path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if not path or path in SPECIAL_CKPT_PATHS or str(path).startswith("registry"):
                return
            self.ckpt = read_checkpoint(path, flag="--ckpt_path")
            config = self.config[subcommand]
            _check_task(self.ckpt, config.model.class_path)
            if self.ckpt.model_config:
                try:
                    self.config = self.parser.parse_object({subcommand: {"model": self.ckpt.model_config}}, self.config)
                except VisionkitError as err:
                    raise CheckpointError(f"--ckpt_path '{path}': its hyperparameters do not fit the config: {err}") from err

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            task_cls = defaults.import_class(config.model.class_path)
            if config.checkpoint.monitor is None:
                config.checkpoint.monitor = getattr(task_cls, "monitor", "val_loss")
                config.checkpoint.mode = getattr(task_cls, "mode", "min")
            for key, value in getattr(task_cls, "trainer_overrides", {}).items():
                config.trainer[key] = value
            resume = runs.resumed_run_dir(self.ckpt.path) if self.ckpt and self.subcommand == "fit" else None
            folder = runs.assign_run_folder(config.trainer.logger, task_cls.__name__, resume, claimed)
            if folder is not None and resume is not None and folder.resolve() == resume:
                self.resumed_run = resume
                self.save_config_kwargs["config_filename"] = runs.free_file_name(resume, "config.yaml")

        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
            from lightning.pytorch.callbacks import ProgressBar

            if config.get("enable_progress_bar") is False:  # the always-on Rich bar must not clash
                callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
            return super()._instantiate_trainer(config, callbacks)

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except Exception as err:
                root = _root_cause(err)
                if isinstance(root, VisionkitError):
                    raise root from err
                if isinstance(err, (ValueError, TypeError, OSError)) and isinstance(root, (ValueError, TypeError)):
                    raise ConfigValueError(str(root)) from err
                raise

        def after_instantiate_classes(self) -> None:
            if self.ckpt is not None:
                check_state_dict(self.ckpt, self.model, LINKED_DATA_ATTRIBUTES)
                self.ckpt.state_dict = {}  # Lightning loads the weights itself; do not hold a second copy
            if self.resumed_run is not None and self.trainer.is_global_zero:
                runs.append_to_resumed_metrics(self.trainer, self.resumed_run, self.ckpt.step if self.ckpt else None)

        def _run_subcommand(self, subcommand: str) -> None:
            try:
                super()._run_subcommand(subcommand)
            except RuntimeError as err:
                if self.ckpt is not None and "state_dict" in str(err):
                    raise CheckpointError(f"--ckpt_path '{self.ckpt.path}' does not fit the model: {err}") from err
                raise

    return VisionKitCLI


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal by their items."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _explicit_links(given: Any) -> dict[str, Any]:
    """The linked model arguments that config files or the command line set explicitly."""
    section = given.get(given.get("subcommand")) if given.get("subcommand") else given
    model = section.get("model") if section is not None else None
    init_args = model.get("init_args") if model is not None and hasattr(model, "get") else None
    if init_args is None:
        return {}
    return {attr: init_args.get(attr) for attr in LINKED_DATA_ATTRIBUTES if init_args.get(attr) is not None}


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


# ---- parse errors -------------------------------------------------------------------------------


def _option_keys(parser: Any) -> list[str]:
    """Every dotted option key of ``parser`` and of its subcommand parsers, with their group prefixes."""
    keys: set[str] = set()
    for action in parser._actions:
        for sub in (getattr(action, "choices", None) or {}).values() if hasattr(action, "add_subcommand") else ():
            keys.update(_option_keys(sub))
        dest = getattr(action, "dest", "")
        if dest and dest not in ("help", "==SUPPRESS=="):
            parts = dest.split(".")
            keys.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(keys)


def _class_keys(class_path: str) -> list[str]:
    """Constructor argument names of ``class_path`` and of the bases its ``**kwargs`` reach (empty when
    it cannot be imported)."""
    import inspect

    from visionkit.core.trainer import import_class

    try:
        cls = import_class(class_path)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for base in cls.__mro__:
        if "__init__" not in vars(base):
            continue
        try:
            params = inspect.signature(base.__init__).parameters
        except (ValueError, TypeError):
            break
        names += [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break  # the chain of **kwargs ends here
    return list(dict.fromkeys(names))


def _unknown(key: str, candidates: list[str], prefix: str = "", where: str = "") -> str:
    """'unknown option' with the closest of ``candidates`` (keys relative to ``prefix``)."""
    import difflib

    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f"; did you mean '{prefix}{match[0]}'?" if match else ""
    return f"unknown option '{prefix}{key}'{where}{hint} (run with --help for every option)"


def _type_names(text: str) -> str:
    """``<class 'int'>`` -> ``int``; ``NoneType`` -> ``null``."""
    return re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text).replace("NoneType", "null")


def _explain_nested(group: str, class_path: str, inner: str) -> str:
    """One line for a problem inside ``model``/``data`` init_args."""
    name = class_path.rsplit(".", 1)[-1]
    option = re.search(r"Option '([^']+)' is not accepted", inner)
    if option:
        return _unknown(option.group(1), _class_keys(class_path), f"{group}.init_args.", f" of {name}")
    value = re.search(r"Parser key \"([\w.]+)\":\s*Expected an? (.*?)\. Got value: (.*)", inner, re.S)
    if value:
        key, expected, given = value.groups()
        return f"{group}.init_args.{key} of {name}: expected {_type_names(expected)}, got '{given.strip()}'"
    return f"{group} ({name}): " + " ".join(inner.split())


def explain_parse_error(message: str, keys: list[str]) -> str:
    """One line for a jsonargparse error: an unknown option (with its closest valid key) or a bad value.

    Args:
        message: the parser's (multi-line) message.
        keys: valid dotted option keys, for the suggestion.
    """
    nested = re.search(r"Parser key \"([\w.]+)\":.*?Problem with given class_path '([^']+)':\s*(.*?)\n\s*- ", message, re.S)
    if nested:
        return _explain_nested(*nested.groups())
    for pattern in (r"does not accept option '([^']+)'", r"unrecognized arguments: --([^\s=]+)"):
        found = re.search(pattern, message)
        if found:
            return _unknown(found.group(1), keys)
    union = re.search(r"Parser key \"([\w.]+)\":\s*Does not validate.*?Subtypes: \[(.*?)\].*Given value: (.*)", message, re.S)
    if union:
        key, subtypes, given = union.groups()
        return f"{key}: expected {' or '.join(_type_names(subtypes).split(', '))}, got '{given.strip()}'"
    return " ".join(message.split())


# ---- --ckpt_path ---------------------------------------------------------------------------------


def _check_task(ckpt: CheckpointInfo, class_path: str) -> None:
    """The checkpoint must hold the config's task (LightningCLI would silently switch to the checkpoint's)."""
    from visionkit.core.checkpoints import CheckpointError
    from visionkit.core.trainer import import_class

    if ckpt.class_path is None:
        return
    wanted = import_class(class_path)
    try:
        held = ckpt.task_class()  # imports only visionkit tasks: a checkpoint never picks what gets imported
    except CheckpointError:
        held = None
    if held is not wanted:
        name = ckpt.class_path.rsplit(".", 1)[-1]
        raise CheckpointError(
            f"--ckpt_path '{ckpt.path}' holds a {name} checkpoint, but the config's model is {wanted.__name__}; "
            f"use a {name} config (or --model.init_args.checkpoint_path to load weights only)"
        )


# ---- run folders ---------------------------------------------------------------------------------


def _register_classes() -> None:
    """Import the modules whose classes the CLI offers by short name."""
    import visionkit.callbacks  # noqa: F401
    import visionkit.data.datamodules  # noqa: F401
    import visionkit.methods  # noqa: F401
    import visionkit.tasks  # noqa: F401


def cli(args: list[str] | None = None, run: bool = True) -> Any:
    """Build (and by default run) the CLI; returns the ``LightningCLI`` object.

    A run folder this call claimed is removed again when the run fails before writing a
    checkpoint or a metrics row, or when it ends with the folder empty (``fast_dev_run``).
    """
    from visionkit.core import trainer as defaults
    from visionkit.core.task import VisionTask
    from visionkit.data.datamodules import VisionDataModule
    from visionkit.utils.runs import discard_run_dir

    _register_classes()
    claimed: list[Path] = []
    cls = _build_cli_class(claimed)
    try:
        result = cls(
            model_class=VisionTask,
            datamodule_class=VisionDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults=defaults.trainer_defaults(),
            seed_everything_default=0,
            save_config_kwargs={"overwrite": False},
            parser_kwargs={"version": __version__},
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )
    except BaseException:
        for folder in claimed:
            discard_run_dir(folder, failed=True)
        raise
    if run:
        for folder in claimed:
            discard_run_dir(folder, failed=False)
    return result


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
