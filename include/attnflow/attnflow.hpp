// The whole attnflow library in one include: every public header, module by module in
// layering order (base, measure, kernel, ot, attention, io; flow, theory, icl, model; run).
// Each module's headers live in include/attnflow/<module>/, its sources in src/<module>/, and
// it builds into the library attnflow_<module> (docs/ARCHITECTURE.md). Prefer the module
// headers in library code; this one is for applications and quick experiments.
#pragma once

#include "attnflow/base/collective.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/base/limits.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/base/types.hpp"
#include "attnflow/base/ziggurat.hpp"

#include "attnflow/measure/measure.hpp"
#include "attnflow/measure/sample.hpp"

#include "attnflow/kernel/batch_kernel.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"

#include "attnflow/ot/divergence.hpp"
#include "attnflow/ot/exact_ot.hpp"
#include "attnflow/ot/ot.hpp"
#include "attnflow/ot/ot_gradient.hpp"
#include "attnflow/ot/ot_report.hpp"
#include "attnflow/ot/sinkhorn.hpp"

#include "attnflow/attention/attention.hpp"
#include "attnflow/attention/attention_grad.hpp"
#include "attnflow/attention/normalization.hpp"

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/io/npy.hpp"

#include "attnflow/flow/ensemble.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/flow/integrate.hpp"
#include "attnflow/flow/observe.hpp"
#include "attnflow/flow/scheme.hpp"

#include "attnflow/theory/cluster_theory.hpp"
#include "attnflow/theory/equiangular.hpp"
#include "attnflow/theory/long_context.hpp"

#include "attnflow/icl/concentration.hpp"
#include "attnflow/icl/icl.hpp"
#include "attnflow/icl/large_prompt.hpp"

#include "attnflow/model/layers.hpp"
#include "attnflow/model/model.hpp"
#include "attnflow/model/model_fit.hpp"
#include "attnflow/model/model_grad.hpp"
#include "attnflow/model/model_tasks.hpp"

#include "attnflow/run/checkpoint.hpp"
#include "attnflow/run/fit_run.hpp"
#include "attnflow/run/icl_run.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/run/progress.hpp"
#include "attnflow/run/reports.hpp"
#include "attnflow/run/run_config.hpp"
#include "attnflow/run/runner.hpp"
#include "attnflow/run/sweep.hpp"
