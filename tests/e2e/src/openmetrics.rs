//! Reading samples out of Prometheus/OpenMetrics text exposition (the operator's `/metrics`).

/// One parsed sample: name, labels (in order), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// One sample line: name, labels, value. None for comments, blank or malformed lines.
pub fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => (&line[..i], &line[i..]),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end;
        loop {
            // label name
            let start = chars.peek()?.0;
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let key = body[start..eq?]
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_string();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.push((key, value));
            match chars.next()? {
                (_, ',') => {
                    if chars.peek().is_some_and(|(_, c)| *c == '}') {
                        end = chars.next()?.0;
                        break;
                    }
                }
                (i, '}') => {
                    end = i;
                    break;
                }
                _ => return None,
            }
        }
        &body[end + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((name.to_string(), labels, value))
}

/// The sum of the samples named `name` whose labels include every pair of `labels`.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = text
        .lines()
        .filter_map(parse_line)
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP shoal_autoscaler_ticks Ticks of the metrics loop.
# TYPE shoal_autoscaler_ticks counter
shoal_autoscaler_ticks_total 31
shoal_metric_query_errors_total{namespace="ns",microservice="slow",reason="timeout"} 4
shoal_metric_query_errors_total{namespace="",microservice="",reason="http"} 1
shoal_build_info{version="0.1.0"} 1
odd{a="x\"y,z}",b="2",} 2.5
# EOF
"#;

    #[test]
    fn samples_by_name_and_labels() {
        assert_eq!(value(TEXT, "shoal_autoscaler_ticks_total", &[]), Some(31.0));
        assert_eq!(
            value(
                TEXT,
                "shoal_metric_query_errors_total",
                &[("microservice", "slow"), ("reason", "timeout")]
            ),
            Some(4.0)
        );
        assert_eq!(
            value(TEXT, "shoal_metric_query_errors_total", &[]),
            Some(5.0)
        );
        assert_eq!(
            value(
                TEXT,
                "shoal_metric_query_errors_total",
                &[("reason", "parse")]
            ),
            None
        );
        assert_eq!(
            value(TEXT, "odd", &[("a", "x\"y,z}"), ("b", "2")]),
            Some(2.5)
        );
        assert_eq!(value(TEXT, "shoal_autoscaler_ticks", &[]), None);
    }
}
