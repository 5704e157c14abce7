"""attnflow.icl: in-context learning: linear-regression prompts, the prompt operator, ICL
training, risks, the infinite-prompt flow and concentration of the empirical prompt.

The C++ module attnflow_icl (include/attnflow/icl/icl.hpp, concentration.hpp,
large_prompt.hpp).
"""
from ._attnflow import (  # noqa: F401
    ConcentrationOptions, ConcentrationResult, ConcentrationRow, IclData, IclModel, IclParams,
    IclPrediction, IclPrompt, IclRiskEstimate, IclSampler, IclStepRecord, IclTrainOptions,
    IclTrainResult, PromptOperator, PromptOutput, SlopeFit, TaskPrior, TokenLaw, concentration,
    empirical_prompt, fit_loglog, gaussian_prompt, icl_balanced_init, icl_estimate_risk,
    icl_fixed_point, icl_flow_ode, icl_infinite_flow, icl_infinite_risk, icl_pack, icl_predict,
    icl_train, icl_unpack, parse_icl_model, parse_task_prior, parse_token_law,
    rademacher_prompt, toeplitz_covariance, ziggurat_fill, ziggurat_normal,
)

__all__ = ["ConcentrationOptions", "ConcentrationResult", "ConcentrationRow", "IclData",
           "IclModel", "IclParams", "IclPrediction", "IclPrompt", "IclRiskEstimate",
           "IclSampler", "IclStepRecord", "IclTrainOptions", "IclTrainResult",
           "PromptOperator", "PromptOutput", "SlopeFit", "TaskPrior", "TokenLaw",
           "concentration", "empirical_prompt", "fit_loglog", "gaussian_prompt",
           "icl_balanced_init", "icl_estimate_risk", "icl_fixed_point", "icl_flow_ode",
           "icl_infinite_flow", "icl_infinite_risk", "icl_pack", "icl_predict", "icl_train",
           "icl_unpack", "parse_icl_model", "parse_task_prior", "parse_token_law",
           "rademacher_prompt", "toeplitz_covariance", "ziggurat_fill", "ziggurat_normal"]
