//! placeholder until the report module lands
use crate::output::OutputFile;
use crate::summary::Summary;
pub fn render(summary: &Summary) -> Result<Vec<OutputFile>, String> {
    Ok(vec![OutputFile::new(
        "report.html",
        format!("{}", summary.scenario.name),
    )])
}
