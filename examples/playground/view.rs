//! The live view: a table of depth, desired and current replicas and the
//! operator's last decision, redrawn in place (or one line per second with
//! `--plain`), under the kubectl commands a user can run meanwhile.

use std::collections::VecDeque;

use crate::stack::Stack;
use crate::Args;

/// One line of the table.
pub struct Row {
    pub seconds: u64,
    pub depth: i64,
    /// `status.desiredReplicas` (None before the first decision).
    pub desired: Option<i64>,
    /// The Deployment's `spec.replicas`.
    pub current: i64,
    pub decision: String,
}

impl Row {
    fn line(&self, width: usize) -> String {
        let desired = self.desired.map_or("-".to_string(), |d| d.to_string());
        let mut decision = self.decision.clone();
        if decision.chars().count() > width {
            decision = decision
                .chars()
                .take(width.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        format!(
            "t={:>4}s  depth={:>5}  desired={:>3}  current={:>3}  {decision}",
            self.seconds, self.depth, desired, self.current
        )
    }
}

/// Rows shown on screen in the redrawn view.
const ROWS: usize = 20;

pub struct View {
    header: String,
    rows: VecDeque<String>,
    plain: bool,
}

impl View {
    pub fn new(args: &Args, stack: &Stack) -> View {
        let header = help(args, stack);
        println!("{header}");
        View {
            header,
            rows: VecDeque::new(),
            plain: args.plain,
        }
    }

    pub fn show(&mut self, row: &Row) {
        if self.plain {
            println!("{}", row.line(200));
            return;
        }
        self.rows.push_back(row.line(90));
        while self.rows.len() > ROWS {
            self.rows.pop_front();
        }
        // Home the cursor and clear the screen, then redraw.
        println!("\x1b[H\x1b[2J{}", self.header);
        for line in &self.rows {
            println!("{line}");
        }
    }
}

fn help(args: &Args, stack: &Stack) -> String {
    let ns = &args.namespace;
    let k = match &stack.kubectl {
        Some(_) => "kubectl".to_string(),
        None => "kubectl   # (install kubectl to run these)".to_string(),
    };
    format!(
        "WorkerPool playground: the operator scales Deployment {ns}/worker from Celery queue depth.\n\
         Try in another terminal:\n  \
           export KUBECONFIG={kc}\n  \
           {k} get wp -n {ns} -w\n  \
           kubectl describe wp worker -n {ns}\n  \
           kubectl get events -n {ns}\n  \
           kubectl get deployment worker -n {ns}\n  \
           kubectl patch wp worker -n {ns} --type=merge -p '{{\"spec\":{{\"maxReplicas\":5}}}}'\n  \
           kubectl explain workerpool.spec\n  \
           redis-cli -u {redis} llen celery\n\
         Operator log: {log}   Ctrl-C stops everything.\n",
        kc = stack.kubeconfig.display(),
        redis = stack.redis_url,
        log = stack.operator_log().display(),
    )
}
