//! Target templates: the workload of a series from its labels (`deployment/{{deployment}}`),
//! shared by the signals that read other systems' series (`prometheus`, `alert`).

use std::collections::BTreeMap;

/// The pieces of a template: literal text and `{{label}}` names.
enum Piece<'a> {
    Text(&'a str),
    Label(&'a str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("`target`: `{{{{` without `}}}}` in `{template}`"))?;
        let name = after[..close].trim();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`target`: `{{{{{name}}}}}` is not a label name in `{template}`"
            ));
        }
        out.push(Piece::Label(name));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Rule-load checks of a target template.
pub fn check(template: &str) -> Vec<String> {
    let mut errors = Vec::new();
    match pieces(template) {
        Err(e) => errors.push(e),
        Ok(p) if !p.iter().any(|p| matches!(p, Piece::Label(_))) => errors.push(format!(
            "`target`: `{template}` names no label: every series would be one workload; name it in the action instead"
        )),
        Ok(_) => {}
    }
    if !(template.starts_with("deployment/") || template.starts_with("statefulset/")) {
        errors.push(format!(
            "`target` must name a workload, `deployment/{{{{label}}}}` or `statefulset/{{{{label}}}}`, found `{template}`"
        ));
    }
    errors
}

/// The target of a series with these labels. A label the template needs and the series
/// lacks is an error: the source does not give what the rule expects.
pub fn render(template: &str, labels: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Label(name) => match labels.get(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(format!(
                        "a series has no label `{name}`, which `target: {template}` needs"
                    ))
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_each_series_labels() {
        let labels = BTreeMap::from([
            ("deployment".to_owned(), "api".to_owned()),
            ("namespace".to_owned(), "prod".to_owned()),
        ]);
        assert_eq!(
            render("deployment/{{deployment}}", &labels).unwrap(),
            "deployment/api"
        );
        assert_eq!(
            render("deployment/{{ deployment }}", &labels).unwrap(),
            "deployment/api"
        );
        let err = render("statefulset/{{statefulset}}", &labels).unwrap_err();
        assert!(err.contains("no label `statefulset`"), "{err}");
        assert!(check("deployment/api")[0].contains("names no label"));
        assert!(check("deployment/{{1x}}")[0].contains("not a label name"));
        assert!(check("pod/{{pod")[0].contains("without"));
        assert!(check("pod/{{pod}}")[0].contains("must name a workload"));
        assert!(check("statefulset/{{sts}}").is_empty());
    }
}
