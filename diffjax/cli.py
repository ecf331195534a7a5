"""`diffjax train|sample|evaluate`: a thin command line over `train_and_evaluate` and friends.

    diffjax train --config configs/ddpm.py:digits --workdir W [--config.a.b=v ...] [--dry_run] [--force]
    diffjax sample --workdir W [--config.sampler.name=ddim --config.sampler.steps=50] [--num_samples N]
    diffjax evaluate --workdir W
    diffjax likelihood --workdir W [--num_examples N]

A config mistake prints one line and exits with code 2, before anything compiles; a non-finite loss
exits with code 1; SIGTERM/SIGINT during training saves a checkpoint and exits with code 0. In a multi-process
run, a peer that dies makes the others exit with code 1 and one line, without waiting on its barriers.
Compiled programs are kept in `<workdir>/xla_cache` for the next run (`--compilation_cache`;
`diffjax.training.compilation_cache`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffjax", description="Train, sample and evaluate diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in [("train", "train, checkpoint, then sample and evaluate"),
                           ("sample", "sample from a run directory's newest checkpoint"),
                           ("evaluate", "evaluate a run directory's samples"),
                           ("likelihood", "log-likelihood or bits/dim of held-out data (PF-ODE or ELBO)")]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--workdir", required=True, help="the run directory")
        p.add_argument("--coordinator_address", default=None, help="multi-host: host:port of process 0")
        p.add_argument("--num_processes", type=int, default=None, help="multi-host: number of processes")
        p.add_argument("--process_id", type=int, default=None, help="multi-host: this process's index")
        p.add_argument("--heartbeat_timeout", type=int, default=100,
                       help="multi-host: seconds without a peer's heartbeat before every process stops")
        p.add_argument("--cpu_devices", default="auto",
                       help="CPU devices to split each batch over: 'auto' (for a U-Net one per core, up to 8, "
                            "dividing the batch, else 1; single-process CPU runs) or a count (1: one device)")
        p.add_argument("--compilation_cache", default="workdir",
                       help="where compiled programs are kept between runs: 'workdir' (<workdir>/xla_cache, "
                            "unless JAX_COMPILATION_CACHE_DIR is set), a directory shared by runs, or 'off'")
        if name == "train":
            p.add_argument("--config", required=True, help="configs/<article>.py[:<scale>[,smoke]]")
            p.add_argument("--dry_run", action="store_true", help="validate and print the config, then stop")
            p.add_argument("--force", action="store_true", help="overwrite a workdir holding another config")
        if name == "sample":
            p.add_argument("--num_samples", type=int, default=None)
        if name == "likelihood":
            p.add_argument("--num_examples", type=int, default=256, help="held-out examples to evaluate")
    return parser


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.a.b=v` (or `--config.a.b v`) overrides from the other arguments."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise SystemExit(_fail(f"--config.{body} needs a value"))
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _fail(message: str, code: int = EXIT_CONFIG) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


CLUSTER_VARIABLES = ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def _explicit_distributed(args) -> bool:
    return bool(args.coordinator_address or args.num_processes or args.process_id is not None)


def _cluster_detected() -> bool:
    return any(v in os.environ for v in CLUSTER_VARIABLES)


def _init_distributed(args) -> None:
    import jax

    if _explicit_distributed(args):
        jax.distributed.initialize(coordinator_address=args.coordinator_address, num_processes=args.num_processes,
                                   process_id=args.process_id, heartbeat_timeout_seconds=args.heartbeat_timeout)
    elif _cluster_detected():
        jax.distributed.initialize(heartbeat_timeout_seconds=args.heartbeat_timeout)  # auto-detected cluster


def _configure_cpu_devices(args, config) -> None:
    """Declares the host's cores as CPU devices (`diffjax.training.host_devices`) before JAX starts."""
    from .training.host_devices import configure_cpu_devices

    distributed = _explicit_distributed(args) or _cluster_detected()
    if args.cpu_devices == "auto" and distributed:  # each process keeps the devices its launcher gave it
        return
    try:
        configure_cpu_devices(args.cpu_devices, int(config.training.batch_size), model=config.model.name)
    except ValueError as e:
        from .config import ConfigError

        raise ConfigError(str(e)) from None


def _configure_compilation_cache(args) -> None:
    """Points JAX's persistent compilation cache where `--compilation_cache` says, before anything compiles."""
    from .training.compilation_cache import configure_compilation_cache

    try:
        configure_compilation_cache(args.compilation_cache, args.workdir)
    except ValueError as e:
        from .config import ConfigError

        raise ConfigError(str(e)) from None


def _lost_peer(error: BaseException) -> str | None:
    """One line describing a failed collective of a multi-process run (a peer died), else None."""
    import jax

    if jax.process_count() < 2 or not isinstance(error, jax.errors.JaxRuntimeError):
        return None
    last = str(error).splitlines()[0].split("Error dispatching computation: ")[-1]
    return (f"process {jax.process_index()} of {jax.process_count()} stopped: a collective with the other "
            f"processes failed ({last[:200]}), most likely because a peer died. Committed checkpoints are "
            "intact; restart every process with the same command to resume")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("jax").setLevel(logging.WARNING)

    from .config import ConfigError, apply_overrides, load_config, to_json
    from .training import CheckpointError, NonFiniteError

    try:
        if args.command == "train":
            config = apply_overrides(load_config(args.config), overrides)
            _configure_cpu_devices(args, config)
            if not args.dry_run:  # before anything compiles: JAX decides once whether a process uses the cache
                _configure_compilation_cache(args)
            from .experiment import validate

            validate(config)
            if args.dry_run:
                print(to_json(config))
                return 0
            _init_distributed(args)
            from .training import train_and_evaluate

            summary = train_and_evaluate(config, args.workdir, force=args.force)
            if summary.get("stopped_by"):
                print(f"stopped by {summary['stopped_by']} at step {summary['step']}; checkpoint saved in "
                      f"{args.workdir}/checkpoints. Run the same command to resume.")
                return 0
            print(json.dumps(summary, indent=2))
            return 0
        from .generate import evaluate_workdir, likelihood_workdir, load_run_config, sample_and_evaluate

        config = load_run_config(args.workdir, overrides)
        _configure_cpu_devices(args, config)
        _configure_compilation_cache(args)
        _init_distributed(args)
        if args.command == "sample":
            print(json.dumps(sample_and_evaluate(config, args.workdir, num_samples=args.num_samples), indent=2))
        elif args.command == "likelihood":
            print(json.dumps(likelihood_workdir(config, args.workdir, num_examples=args.num_examples), indent=2))
        else:
            print(json.dumps(evaluate_workdir(config, args.workdir), indent=2))
        return 0
    except ConfigError as e:
        return _fail(str(e))
    except FileNotFoundError as e:
        return _fail(str(e).splitlines()[0] if str(e) else repr(e))
    except (NonFiniteError, CheckpointError) as e:
        return _fail(str(e), EXIT_FAILURE)
    except Exception as e:
        message = _lost_peer(e)
        if message is None:
            raise
        _fail(message, EXIT_FAILURE)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FAILURE)  # skip jax.distributed's shutdown barrier, which would wait for the dead peer


if __name__ == "__main__":
    sys.exit(main())
