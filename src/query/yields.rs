//! Yield points after the operators that multiply their input, so that a query can be cancelled.
//!
//! A query is cancelled by dropping its task, which takes effect only when the task's stream
//! returns `Pending`. DataFusion's own `EnsureCooperative` rule puts yield points at the sources
//! and exchanges, where the batches are made; but a join (a cross join above all) or an unnest
//! can turn one input batch into millions of output batches, and an aggregate above it consumes
//! them all within one poll. Wrapping those operators in `CooperativeExec` makes each output
//! batch spend a unit of the task's Tokio budget, so the task yields every 128 batches and a
//! query past its time limit, or whose client left, stops within milliseconds.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

#[derive(Debug, Default)]
pub(super) struct YieldAfterMultipliers;

/// Operators whose output can be far larger than their input: every join (hash, nested loop,
/// cross, sort-merge, symmetric hash, piecewise) and unnest.
fn multiplies_its_input(plan: &dyn ExecutionPlan) -> bool {
    let name = plan.name();
    name.contains("Join") || name == "UnnestExec"
}

impl PhysicalOptimizerRule for YieldAfterMultipliers {
    fn name(&self) -> &str {
        "YieldAfterMultipliers"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            if multiplies_its_input(plan.as_ref()) {
                Ok(Transformed::yes(
                    Arc::new(CooperativeExec::new(plan)) as Arc<dyn ExecutionPlan>
                ))
            } else {
                Ok(Transformed::no(plan))
            }
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn joins_and_unnest_are_wrapped_in_yield_points() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let plan = state
            .create_logical_plan(
                "SELECT count(*) FROM generate_series(1, 10) a CROSS JOIN \
                 (SELECT unnest(range(0, 3)) AS u) b",
            )
            .await
            .unwrap();
        let physical = state.create_physical_plan(&plan).await.unwrap();
        let optimized = YieldAfterMultipliers
            .optimize(physical, &ConfigOptions::default())
            .unwrap();
        let text = datafusion::physical_plan::displayable(optimized.as_ref())
            .indent(false)
            .to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for operator in ["CrossJoinExec", "UnnestExec"] {
            let at = lines
                .iter()
                .position(|l| l.starts_with(operator))
                .unwrap_or_else(|| panic!("{operator} in\n{text}"));
            assert!(
                at > 0 && lines[at - 1].starts_with("CooperativeExec"),
                "{operator} is not under a CooperativeExec:\n{text}"
            );
        }
    }
}
