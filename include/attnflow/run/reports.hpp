// The JSON form of the library's reports, one function per report, shared by the CLI (which
// prints or writes it) and Python (Report.to_json()): the keys of report.json / summary.json,
// starting with the summary header (kind, attnflow_version, status).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string_view>

#include "attnflow/theory/cluster_theory.hpp"
#include "attnflow/theory/long_context.hpp"
#include "attnflow/ot/ot_report.hpp"

namespace attnflow {

// `attnflow ot`'s report.json ("kind": "ot"): the solve's status and numbers, the problem's
// sizes and wall time. The potentials and the plan are files, not keys.
nlohmann::json ot_report_json(const OtReport& r, std::string_view version);
// `attnflow theory clusters`'s JSON ("kind": "theory-clusters").
nlohmann::json clusters_report_json(const ClustersReport& r, std::string_view version);
// `attnflow theory long-context`'s JSON ("kind": "theory-long-context"; cosine_direct with direct).
nlohmann::json long_context_report_json(const LongContextResult& r, std::string_view version);

}  // namespace attnflow
