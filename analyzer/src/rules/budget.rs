//! A per-rule evaluation budget: a hostile or runaway rule (a nested comprehension over big
//! lists) stops after a number of steps or a wall-clock time, whichever comes first, and is
//! reported as a *rule error* instead of running for minutes.
//!
//! The `cel` interpreter has no step limit or cancellation, but every comprehension
//! (`all`, `exists`, `exists_one`, `map`, `filter`) evaluates its loop condition and loop step
//! once per element. [`instrument`] rewrites each comprehension after compilation so that,
//! once per element, a call to [`TICK`] runs: an identity function that counts and, past the
//! budget, fails the evaluation with [`EXCEEDED`]. `all`/`exists` tick in their loop
//! condition (their step errors are deferred to the loop's end), the others in their step.
//! The rewrite keeps the shapes the interpreter optimizes (`@result && x`, `@result + [x]`,
//! `c ? @result + [x] : @result`, a literal loop condition for `map`/`filter`), so a
//! built-in rule runs as fast as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cel::common::ast::{CallExpr, Expr, IdedExpr, ListExpr, operators};
use cel::common::value::CowVal;
use cel::{Context, ExecutionError, FunctionContext};

/// The name of the counting identity function (`@` cannot be written in CEL source).
pub const TICK: &str = "@budget";
/// The error text a rule gets when it runs out of budget.
pub const EXCEEDED: &str = "evaluation budget exceeded";

/// Limits of one rule's evaluation on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most comprehension steps.
    pub steps: u64,
    /// Longest wall time.
    pub time: Duration,
}

impl Default for Budget {
    /// 200 million steps or 20 s. The built-in rules take under 2 million steps and well
    /// under a second on the largest bench bundles (see `rules/README.md`).
    fn default() -> Self {
        Budget {
            steps: 200_000_000,
            time: Duration::from_secs(20),
        }
    }
}

/// The running count of one evaluation.
#[derive(Debug)]
pub struct Meter {
    budget: Budget,
    start: Instant,
    steps: AtomicU64,
    spent: AtomicBool,
}

impl Meter {
    /// Starts counting now.
    pub fn start(budget: Budget) -> Arc<Meter> {
        Arc::new(Meter {
            budget,
            start: Instant::now(),
            steps: AtomicU64::new(0),
            spent: AtomicBool::new(false),
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// True once the budget is spent.
    pub fn exceeded(&self) -> bool {
        self.spent.load(Ordering::Relaxed)
    }

    /// Counts one step; false once the budget is spent (and for every step after: an
    /// `exists` could otherwise absorb one failed step and go on).
    fn tick(&self) -> bool {
        if self.spent.load(Ordering::Relaxed) {
            return false;
        }
        let n = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        // Reading the clock costs more than a step: look every 4096 steps.
        let over = n > self.budget.steps
            || (n.is_multiple_of(4096) && self.start.elapsed() > self.budget.time);
        if over {
            self.spent.store(true, Ordering::Relaxed);
        }
        !over
    }

    /// Adds [`TICK`] to a context, counting against this meter.
    pub fn install(self: &Arc<Self>, ctx: &mut Context<'_, '_>) {
        let meter = Arc::clone(self);
        let f: TickFn = Box::new(move |ftx| {
            if !meter.tick() {
                return Err(ExecutionError::function_error(TICK, EXCEEDED));
            }
            ftx.args
                .pop()
                .ok_or_else(|| ExecutionError::function_error(TICK, "no argument"))
        });
        // Only fails when the name clashes with a declared function, which `@` rules out.
        let _ = ctx.add_function(TICK, f);
    }
}

/// The shape of a raw `cel` function: it can hand its argument back borrowed, uncopied.
type TickFn = Box<
    dyn for<'c, 'k> Fn(&mut FunctionContext<'c, 'k>) -> Result<CowVal<'c, 'k>, ExecutionError>
        + Send
        + Sync,
>;

fn tick(e: IdedExpr) -> IdedExpr {
    IdedExpr {
        id: e.id,
        expr: Expr::Call(CallExpr {
            func_name: TICK.to_string(),
            target: None,
            args: vec![e],
        }),
    }
}

fn is_ident(e: &IdedExpr, name: &str) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == name)
}

/// `@result + [x, ...]` with every element ticked; false when `e` is not that shape.
fn tick_append(e: &mut IdedExpr, accu: &str) -> bool {
    let Expr::Call(call) = &mut e.expr else {
        return false;
    };
    if call.func_name != operators::ADD || call.target.is_some() {
        return false;
    }
    match call.args.as_mut_slice() {
        [lhs, rhs] if is_ident(lhs, accu) => match &mut rhs.expr {
            Expr::List(ListExpr { elements, .. }) => {
                for el in elements.iter_mut() {
                    *el = tick(std::mem::take(el));
                }
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Rewrites the loop step of one comprehension (see the module doc).
fn tick_step(step: &mut IdedExpr, accu: &str) {
    if let Expr::Call(call) = &mut step.expr
        && call.target.is_none()
    {
        let name = call.func_name.as_str();
        if name == operators::CONDITIONAL && call.args.len() == 3 && is_ident(&call.args[2], accu) {
            let guard = std::mem::take(&mut call.args[0]);
            call.args[0] = tick(guard);
            return;
        }
    }
    if tick_append(step, accu) {
        return;
    }
    let whole = std::mem::take(step);
    *step = tick(whole);
}

/// Instruments every comprehension of `e` (recursively) with [`TICK`].
pub fn instrument(e: &mut IdedExpr) {
    match &mut e.expr {
        Expr::Comprehension(c) => {
            instrument(&mut c.iter_range);
            instrument(&mut c.accu_init);
            instrument(&mut c.loop_cond);
            instrument(&mut c.loop_step);
            instrument(&mut c.result);
            if matches!(c.loop_cond.expr, Expr::Literal(_)) {
                let accu = c.accu_var.clone();
                tick_step(&mut c.loop_step, &accu);
            } else {
                // `all`/`exists`: the interpreter defers a loop step's error to the end of
                // the loop (cel-go's `error && false` is `false`), so a ticking step would
                // not stop it. Its loop condition is checked before every element and its
                // error ends the loop at once.
                let cond = std::mem::take(&mut c.loop_cond);
                c.loop_cond = tick(cond);
            }
        }
        Expr::Call(call) => {
            if let Some(t) = call.target.as_deref_mut() {
                instrument(t);
            }
            call.args.iter_mut().for_each(instrument);
        }
        Expr::List(l) => l.elements.iter_mut().for_each(instrument),
        Expr::Map(m) => {
            for entry in m.entries.iter_mut() {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &mut entry.expr {
                    instrument(&mut me.key);
                    instrument(&mut me.value);
                }
            }
        }
        Expr::Select(s) => instrument(&mut s.operand),
        Expr::Struct(s) => {
            for entry in s.entries.iter_mut() {
                if let cel::common::ast::EntryExpr::StructField(f) = &mut entry.expr {
                    instrument(&mut f.value);
                }
            }
        }
        _ => {}
    }
}
