//! The load shape of every run: the arrival process of `--rate` (`--arrival`,
//! `--burstiness`) and the ramp-up (`--ramp-up-duration`, `--ramp-up-requests`).

use crate::cli::{ArrivalArg, RunArgs};
use crate::error::usage;
use crate::schedule::{Process, Ramp, Shape};

/// The load shape the flags give.
pub(crate) fn shape(a: &RunArgs) -> anyhow::Result<Shape> {
    let process = match (a.arrival, a.burstiness) {
        (None | Some(ArrivalArg::Poisson), None) => Process::Poisson,
        (Some(ArrivalArg::Constant), None) => Process::Constant,
        (Some(ArrivalArg::Gamma), None) => {
            return Err(usage(
                "--arrival gamma needs --burstiness K, the gamma shape (1 is Poisson, below 1 burstier, above 1 more even)",
            ))
        }
        (None | Some(ArrivalArg::Gamma), Some(k)) => Process::Gamma(k),
        (Some(other), Some(k)) => {
            return Err(usage(format!(
                "--burstiness {k} shapes gamma arrivals, not {} ones: drop --arrival or give --arrival gamma",
                match other {
                    ArrivalArg::Constant => "constant",
                    _ => "Poisson",
                }
            )))
        }
    };
    let ramp = match (a.ramp_up_duration, a.ramp_up_requests) {
        (Some(s), None) => Some(Ramp::Seconds(s)),
        (None, Some(n)) => Some(Ramp::Requests(n)),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(usage(
                "--ramp-up-duration and --ramp-up-requests both set the ramp-up: give one",
            ))
        }
    };
    let rated = a.rate.iter().any(|r| *r > 0.0);
    if process != Process::Poisson && !rated {
        return Err(usage(
            "--arrival and --burstiness shape the gaps of --rate: give a --rate above 0",
        ));
    }
    Ok(Shape { process, ramp })
}
