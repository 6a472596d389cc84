"""The ``visionkit`` command: a LightningCLI with visionkit's tasks, datamodules and trainer defaults.

``visionkit --help`` and ``--version`` are answered without importing torch or Lightning.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

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

#: ``--ckpt_path`` values that Lightning resolves itself (no file to check here).
SPECIAL_CKPT_PATHS = ("best", "last", "hpc")


class ConfigKeyError(ConfigValueError):
    """The command line or a config file names an unknown option, or gives a value of the wrong type."""


class LinkedValueError(ConfigValueError):
    """A model value given explicitly that conflicts with the value the data links into the model."""


class CheckpointError(VisionkitError, ValueError):
    """A ``--ckpt_path`` that is missing, unreadable, of another task or does not fit the model."""


class RunFolderError(VisionkitError, ValueError):
    """A logger version that names a folder holding another run."""


def _build_cli_class(claimed: list[Path]) -> type:
    """The CLI class; run folders it creates are appended to ``claimed`` (for clean-up on failure)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from visionkit.core import trainer as defaults
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
            self.ckpt: _CheckpointInfo | None = None
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
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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
            self.ckpt = read_checkpoint(path)
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
            folder = assign_run_folder(config.trainer.logger, task_cls.__name__, resume, claimed)
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
                _check_state_dict(self.ckpt, self.model)
                self.ckpt.shapes = {}  # no longer needed
            if self.resumed_run is not None and self.trainer.is_global_zero:
                _append_to_resumed_metrics(self.trainer, self.resumed_run, self.ckpt.step if self.ckpt else None)

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
    """Constructor argument names of ``class_path`` (empty when it cannot be imported)."""
    import inspect

    from visionkit.core.trainer import import_class

    try:
        params = inspect.signature(import_class(class_path)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [name for name, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


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


@dataclasses.dataclass
class _CheckpointInfo:
    """What the CLI needs of a ``--ckpt_path``: hyperparameters, tensor shapes and the resume step."""

    path: Path
    class_path: str | None
    hparams: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    step: int | None

    @property
    def model_config(self) -> dict[str, Any]:
        """The model section the checkpoint's hyperparameters give (LightningCLI's ``ckpt_path`` rule)."""
        if self.class_path is None:
            return dict(self.hparams)
        return {"class_path": self.class_path, "dict_kwargs": dict(self.hparams)}


def read_checkpoint(path: str | Path) -> _CheckpointInfo:
    """Read a Lightning checkpoint safely (``torch.load(weights_only=True)``); a bad file is a :class:`CheckpointError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--ckpt_path '{path}' does not exist; expected a Lightning .ckpt file of a previous run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every reader failure is reported the same way
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        raise CheckpointError(
            f"--ckpt_path '{path}' is not a readable Lightning checkpoint (empty, truncated or another format: "
            f"{type(err).__name__}{': ' + first if first else ''})"
        ) from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            f"--ckpt_path '{path}' holds no Lightning 'state_dict'; for a weight file use --model.init_args.checkpoint_path"
        )
    hparams = {k: v for k, v in dict(ckpt.get("hyper_parameters") or {}).items() if k != "_instantiator"}
    shapes = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    return _CheckpointInfo(path, hparams.pop("_class_path", None), hparams, shapes, _resume_step(ckpt))


def _resume_step(ckpt: dict[str, Any]) -> int | None:
    """The logging step a run resumed from ``ckpt`` continues at (Lightning's ``_batches_that_stepped``)."""
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"])
    except (KeyError, TypeError, ValueError):
        step = ckpt.get("global_step")
        return int(step) if isinstance(step, int) else None


def _check_task(ckpt: _CheckpointInfo, class_path: str) -> None:
    """The checkpoint must hold the config's task (LightningCLI would silently switch to the checkpoint's)."""
    from visionkit.core.trainer import import_class

    if ckpt.class_path is None:
        return
    wanted = import_class(class_path)
    try:
        held = import_class(ckpt.class_path)
    except (ImportError, AttributeError, ValueError):
        held = None
    if held is not wanted:
        name = ckpt.class_path.rsplit(".", 1)[-1]
        raise CheckpointError(
            f"--ckpt_path '{ckpt.path}' holds a {name} checkpoint, but the config's model is {wanted.__name__}; "
            f"use a {name} config (or --model.init_args.checkpoint_path to load weights only)"
        )


def _check_state_dict(ckpt: _CheckpointInfo, model: Any) -> None:
    """Every checkpoint tensor must fit the built model; name the linked values that differ."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = [k for k in ckpt.shapes if k in own and own[k] != ckpt.shapes[k]]
    strict = getattr(model, "strict_loading", True)
    missing = [k for k in own if k not in ckpt.shapes] if strict else []
    unexpected = [k for k in ckpt.shapes if k not in own] if strict else []
    if not (wrong or missing or unexpected):
        return
    hparams = getattr(model, "hparams", {})
    differ = [
        f"{attr}={ckpt.hparams[attr]} (the data gives {hparams[attr]})"
        for attr in LINKED_DATA_ATTRIBUTES
        if attr in ckpt.hparams and attr in hparams and _plain(ckpt.hparams[attr]) != _plain(hparams[attr])
    ]
    parts = [f"size mismatch {[(k, ckpt.shapes[k], own[k]) for k in wrong[:2]]}"] if wrong else []
    parts += [f"missing {missing[:3]}"] if missing else []
    parts += [f"unexpected {unexpected[:3]}"] if unexpected else []
    trained = f"; it was trained with {', '.join(differ)}" if differ else ""
    raise CheckpointError(f"--ckpt_path '{ckpt.path}' does not fit the model: {'; '.join(parts)}{trained}")


# ---- run folders ---------------------------------------------------------------------------------


def _logger_args(loggers: Any) -> list[Any]:
    """The ``init_args`` of the configured loggers that write under ``save_dir`` (CSV, TensorBoard)."""
    if not isinstance(loggers, list):
        loggers = [loggers]
    return [lg.init_args for lg in loggers if hasattr(lg, "init_args") and "save_dir" in lg.init_args]


def _version_name(version: Any) -> str:
    """Lightning's folder name for a logger version (an int ``N`` means ``version_N``)."""
    return version if isinstance(version, str) else f"version_{version}"


def assign_run_folder(loggers: Any, task_name: str, resume: Path | None, claimed: list[Path]) -> Path | None:
    """Give the configured loggers one shared run folder; returns it (None without a file logger).

    * an explicit logger ``version`` is kept; it may not name another run's folder;
    * a ``fit`` resumed from ``<run>/checkpoints/*.ckpt`` continues in ``<run>``;
    * otherwise a fresh ``version_N`` is claimed atomically (on rank zero; appended to ``claimed``).
    """
    from visionkit.utils import runs

    args = _logger_args(loggers)
    if not args:
        return None
    for a in args:
        if a.get("name") in (None, "default", "lightning_logs"):
            a["name"] = task_name
    first = args[0]
    shared = [a for a in args if a.get("save_dir") == first["save_dir"] and a.get("name") == first["name"]]
    rank_zero = runs.global_rank() == 0
    if first.get("version") is not None:
        folder = Path(first["save_dir"]) / first["name"] / _version_name(first["version"])
        if rank_zero:
            _claim_explicit(folder, first["version"], resume, claimed)
        version = first["version"]
    elif resume is not None:
        folder, version = resume, resume.name
        if (Path(first["save_dir"]) / first["name"]).resolve() != resume.parent:
            # the same spelling as the interrupted run's (relative) paths, so ModelCheckpoint restores its state
            for a in shared:
                a["save_dir"], a["name"] = os.path.relpath(resume.parent.parent), resume.parent.name
    elif rank_zero:
        folder = runs.claim_version_dir(first["save_dir"], first["name"])
        claimed.append(folder)
        version = folder.name
    else:  # rank zero claimed the folder; Lightning broadcasts rank zero's paths
        from visionkit.core.trainer import next_version

        folder, version = None, f"version_{next_version(first['save_dir'], first['name'])}"
    for a in shared:
        if a.get("version") is None:
            a["version"] = version
    return folder


def _claim_explicit(folder: Path, version: Any, resume: Path | None, claimed: list[Path]) -> None:
    """Use an explicitly named run folder, unless it holds another run (then a :class:`RunFolderError`)."""
    resuming = resume is not None and folder.resolve() == resume
    if (folder / "config.yaml").exists() and not resuming:
        raise RunFolderError(
            f"logger version '{version}' is the folder of an earlier run ('{folder}' holds config.yaml); "
            "choose a new version, or leave it out to get a fresh version_N"
        )
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return
    claimed.append(folder)


def _append_to_resumed_metrics(trainer: Any, run: Path, step: int | None) -> None:
    """CSV loggers writing into the resumed run's folder append to its ``metrics.csv``."""
    from lightning.pytorch.loggers import CSVLogger

    from visionkit.utils.runs import append_to_metrics

    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger) and Path(logger.log_dir).resolve() == run:
            append_to_metrics(logger, step)


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
