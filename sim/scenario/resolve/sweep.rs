//! The sweep a scenario declares (`sweep:`): its parameter, values and proxy modes.

use super::services::MAX_SERVICES;
use super::{Locator, Res};
use crate::cluster::ProxyMode;
use crate::scenario::locate::Seg;
use crate::scenario::{self, Scenario};

pub(super) fn check_sweep(
    loc: &Locator,
    sw: &scenario::SweepSpec,
    s: &Scenario,
) -> Res<crate::cluster::SweepSpec> {
    let parameter = match sw.parameter.as_str() {
        "services" => crate::cluster::Parameter::Services,
        "endpoints" => crate::cluster::Parameter::Endpoints,
        other => {
            return Err(loc.err(
                at!["sweep", "parameter"],
                format!("unknown sweep parameter '{other}', expected one of: services, endpoints"),
            ))
        }
    };
    if s.generated_services.is_none() {
        return Err(loc.err(
            at!["sweep", "parameter"],
            format!("sweeping '{}' needs a generated_services section to vary; add one", sw.parameter),
        ));
    }
    if sw.values.is_empty() {
        return Err(
            loc.err(at!["sweep", "values"], "values is empty; give at least one, e.g. [10, 100, 1000]")
        );
    }
    if let Some(v) = sw.values.iter().find(|&&v| v == 0 || v as usize > MAX_SERVICES) {
        return Err(
            loc.err(at!["sweep", "values"], format!("value {v} is outside 1..={MAX_SERVICES}; change it"))
        );
    }
    let mut proxies = Vec::new();
    for (i, p) in sw.proxies.iter().enumerate() {
        let m = p.parse::<ProxyMode>().map_err(|e| loc.err(at!["sweep", "proxies", i], e))?;
        if proxies.contains(&m) {
            return Err(loc.err(at!["sweep", "proxies", i], format!("proxy '{p}' is listed twice; keep one")));
        }
        proxies.push(m);
    }
    if proxies.is_empty() {
        proxies = ProxyMode::ALL.to_vec();
    }
    let mut values = sw.values.clone();
    values.sort_unstable();
    if let Some(w) = values.windows(2).find(|w| w[0] == w[1]) {
        return Err(loc.err(at!["sweep", "values"], format!("value {} is listed twice; keep one", w[0])));
    }
    Ok(crate::cluster::SweepSpec { parameter, values, proxies })
}
