//! Prometheus' HTTP API, the part the `prometheus` signal uses: an instant query
//! (`GET /api/v1/query`) and its answer. Vectors and scalars are readings; a matrix or a
//! string is a query that cannot be read as one, and an answer with a NaN or an infinity is
//! no number to compare: unknown, with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// One series of an instant vector, or the scalar (no labels).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Parses Prometheus' sample value: `"1.5"`, `"NaN"`, `"+Inf"`; only a finite number is one.
fn number(text: &str, labels: &BTreeMap<String, String>) -> Result<f64, String> {
    let v: f64 = text
        .parse()
        .map_err(|_| format!("the value `{text}` of {labels:?} is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "the value of {} is {text}: no number to compare",
            shown(labels)
        ))
    }
}

fn shown(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "the scalar".to_owned();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Reads the body of `/api/v1/query`, whatever its HTTP status (Prometheus answers errors
/// as JSON with 400, 422 or 503).
pub fn parse(body: &[u8]) -> Result<Vec<Sample>, String> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus API answer: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "{}: {}",
            answer.error_type.as_deref().unwrap_or("error"),
            answer.error.as_deref().unwrap_or("no message")
        ));
    }
    let Some(data) = answer.data else {
        return Err("the answer has no data".to_owned());
    };
    let malformed = |e: serde_json::Error| format!("a malformed {} result: {e}", data.result_type);
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<VectorSample> = serde_json::from_value(data.result.clone()).map_err(malformed)?;
            samples
                .into_iter()
                .map(|s| {
                    let value = number(&s.value.1, &s.metric)?;
                    Ok(Sample {
                        labels: s.metric,
                        value,
                    })
                })
                .collect()
        }
        "scalar" => {
            let (_, text): (f64, String) = serde_json::from_value(data.result.clone()).map_err(malformed)?;
            let labels = BTreeMap::new();
            Ok(vec![Sample {
                value: number(&text, &labels)?,
                labels,
            }])
        }
        "matrix" => Err("the query returns a range vector (matrix): use an instant vector, e.g. wrap it in an aggregation or drop the `[range]`".to_owned()),
        other => Err(format!("the query returns a {other}, not a number")),
    }
}

/// One instant query at `url` (the server's base URL), with an optional bearer token.
pub async fn query(
    client: &reqwest::Client,
    url: &str,
    promql: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Vec<Sample>, String> {
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let timeout_param = format!("{}ms", timeout.as_millis().max(1));
    let mut req = client
        .get(&endpoint)
        .query(&[("query", promql), ("timeout", &timeout_param)])
        .timeout(timeout);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|e| {
        let e = e.without_url();
        if e.is_timeout() {
            format!("no answer within {}s", timeout.as_secs_f64())
        } else if e.is_connect() {
            format!("cannot connect: {e}")
        } else {
            e.to_string()
        }
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the answer: {}", e.without_url()))?;
    match parse(&body) {
        Ok(samples) => Ok(samples),
        Err(why) if (200..300).contains(&status) => Err(why),
        Err(why) if status == 401 || status == 403 => Err(format!(
            "HTTP {status}: the server refuses the query (set PROMETHEUS_TOKEN?): {why}"
        )),
        Err(why) => Err(format!("HTTP {status}: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_scalars_and_what_is_not_a_number() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"deployment":"api","namespace":"prod"},"value":[1780000000.5,"91.5"]},
            {"metric":{},"value":[1780000000.5,"3"]}]}}"#;
        let got = parse(vector).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels["deployment"], "api");
        assert_eq!(got[0].value, 91.5);
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1780000000,"0.25"]}}"#;
        assert_eq!(parse(scalar).unwrap()[0].value, 0.25);
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(empty).unwrap(), vec![]);
        for (text, why) in [("NaN", "NaN"), ("+Inf", "+Inf"), ("-Inf", "-Inf")] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"pod":"a"}},"value":[1,"{text}"]}}]}}}}"#
            );
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.contains(why) && err.contains("pod=\"a\""), "{err}");
        }
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse(matrix).unwrap_err().contains("range vector"));
        let error =
            br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected identifier"}"#;
        assert_eq!(
            parse(error).unwrap_err(),
            "bad_data: 1:5: parse error: unexpected identifier"
        );
        assert!(parse(b"<html>")
            .unwrap_err()
            .starts_with("not a Prometheus API answer"));
    }
}
