"""attnflow.run: experiments as the CLI runs them: configs (TOML), runs with observations and
checkpoints, fits, ICL and large-prompt runs, sweeps.

The C++ module attnflow_run (include/attnflow/run/runner.hpp, run_config.hpp, config.hpp,
checkpoint.hpp, fit_run.hpp, icl_run.hpp, sweep.hpp).
"""
from ._attnflow import (  # noqa: F401
    Checkpoint, Config, FitConfig, FitRunResult, IclRunConfig, IclRunSummary,
    LargePromptRunConfig, ObservationRow, RunConfig, RunOptions, RunResult, SweepAxis,
    SweepGrid, SweepOptions, SweepResult, default_fit_config_toml, default_icl_config_toml,
    default_largeprompt_config_toml, default_run_config_toml, initial_positions,
    kCheckpointVersion, last_observation, load_model, observable_columns, observation_time,
    parse_fit_config, parse_icl_config,
    parse_largeprompt_config, parse_run_config, parse_sweep, read_checkpoint, run_experiment,
    run_fit, run_icl, run_largeprompt, run_sweep, save_model, write_checkpoint,
)

__all__ = ["Checkpoint", "Config", "FitConfig", "FitRunResult", "IclRunConfig",
           "IclRunSummary", "LargePromptRunConfig", "ObservationRow", "RunConfig",
           "RunOptions", "RunResult", "SweepAxis", "SweepGrid", "SweepOptions", "SweepResult",
           "default_fit_config_toml", "default_icl_config_toml",
           "default_largeprompt_config_toml", "default_run_config_toml", "initial_positions",
           "kCheckpointVersion", "last_observation", "load_model", "observable_columns",
           "observation_time", "parse_fit_config",
           "parse_icl_config", "parse_largeprompt_config", "parse_run_config", "parse_sweep",
           "read_checkpoint", "run_experiment", "run_fit", "run_icl", "run_largeprompt",
           "run_sweep", "save_model", "write_checkpoint"]
