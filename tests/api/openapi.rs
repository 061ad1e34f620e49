//! The API's OpenAPI document says what the handlers really read and answer: parameters
//! where they are read, the category as its enum, every status an operation answers
//! (with the error body's schema), whole numbers written `1.0`, and examples that reach a
//! 201. `tests/schemathesis/run.sh` checks the same document against the running binary
//! with generated requests; these tests pin the points one by one.

use crate::helpers::*;
use serde_json::{json, Value};

async fn document(app: &TestApp) -> Value {
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A schema's example: `example`, or the first of `examples`.
fn example_of(schema: &Value) -> Value {
    if !schema["example"].is_null() {
        schema["example"].clone()
    } else {
        schema["examples"][0].clone()
    }
}

/// The schema a `$ref` (or an inline schema) stands for.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

engine_test!(openapi_declares_parameters_and_the_category_as_the_handlers_read_them);
/// `province` of `GET /api/v1/communes` is a query parameter, and `NewTip.category` is
/// the category enum, with exactly the values the handler accepts.
async fn openapi_declares_parameters_and_the_category_as_the_handlers_read_them(engine: Engine) {
    let app = spawn_app(engine).await;
    let doc = document(&app).await;
    let params = doc["paths"]["/api/v1/communes"]["get"]["parameters"]
        .as_array()
        .expect("communes has parameters");
    let province = params
        .iter()
        .find(|p| p["name"] == "province")
        .expect("a province parameter");
    assert_eq!(province["in"], "query", "{province}");
    assert_eq!(province["required"], true);
    // What the document says is what the handler reads.
    let res = app
        .client
        .get(app.url("/api/v1/communes?province=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let communes: Vec<Value> = res.json().await.unwrap();
    assert!(communes.iter().any(|c| c["code"] == 70), "{communes:?}");

    let category = resolve(
        &doc,
        &doc["components"]["schemas"]["NewTip"]["properties"]["category"],
    );
    let values: Vec<&str> = category["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("category is an enum: {category}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let accepted: Vec<&str> = tinbao::tips::Category::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(values, accepted);
    app.stop().await;
}

/// Asserts that `status` is documented for the operation, and that a JSON answer has
/// every property its documented schema requires.
async fn assert_documented(doc: &Value, path: &str, method: &str, res: reqwest::Response) {
    let status = res.status().as_u16();
    let responses = &doc["paths"][path][method]["responses"];
    let documented = &responses[status.to_string()];
    assert!(
        documented.is_object(),
        "{method} {path} answered {status}, which its document does not list: {responses}"
    );
    if status == 429 {
        assert!(res.headers().contains_key("retry-after"));
        assert!(
            documented["headers"]["Retry-After"].is_object(),
            "{method} {path}: 429 documents Retry-After"
        );
    }
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let media = &documented["content"]["application/json"];
    assert!(
        media.is_object(),
        "{method} {path} {status}: a JSON body is documented"
    );
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = res.json().await.unwrap();
    let schema = resolve(doc, &media["schema"]);
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        assert!(
            body.get(name).is_some(),
            "{method} {path} {status}: required `{name}` missing from {body}"
        );
    }
    if status >= 400 {
        assert_eq!(
            media["schema"]["$ref"], "#/components/schemas/ApiError",
            "{method} {path} {status}: errors are ApiError"
        );
        assert!(body["error"].is_string() && body["message"].is_string());
    }
}

engine_test!(every_status_the_api_answers_is_documented_with_its_body);
/// Each operation's answers, good and bad (malformed, too large, invalid, unknown, rate
/// limited), are listed in the document with the body they carry.
async fn every_status_the_api_answers_is_documented_with_its_body(engine: Engine) {
    let app = spawn_app_with(engine, |c| {
        c.max_body_bytes = 64 * 1024;
        c.rate_limit.enabled = true;
        c.rate_limit.submit_burst = 3;
        c.rate_limit.check_burst = 2;
    })
    .await;
    let doc = document(&app).await;
    let post_json = |path: &str, body: String| {
        app.client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let big = json!({ "description": "x".repeat(100 * 1024), "category": "dealing" });
    let big_receipt = json!({ "receipt": "1".repeat(100 * 1024) });

    let tips = "/api/v1/tips";
    let answers = [
        post_json(tips, "{".into()).await.unwrap(),
        post_json(tips, big.to_string()).await.unwrap(),
        post_json(tips, tip_json("một tin").to_string())
            .await
            .unwrap(),
        post_json(
            tips,
            json!({"category": "weather", "description": "x"}).to_string(),
        )
        .await
        .unwrap(),
        post_json(tips, tip_json("hai").to_string()).await.unwrap(),
        post_json(tips, tip_json("ba").to_string()).await.unwrap(),
    ];
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [400, 413, 201, 422, 201, 429]);
    for res in answers {
        assert_documented(&doc, tips, "post", res).await;
    }

    let status = "/api/v1/tips/status";
    let answers = [
        post_json(status, "{".into()).await.unwrap(),
        post_json(status, "{\"receipt\": 12}".into()).await.unwrap(),
        post_json(status, big_receipt.to_string()).await.unwrap(),
        post_json(
            status,
            json!({"receipt": "1111-2222-3333-4444"}).to_string(),
        )
        .await
        .unwrap(),
        post_json(status, json!({"receipt": "not one"}).to_string())
            .await
            .unwrap(),
        post_json(
            status,
            json!({"receipt": "1111-2222-3333-4444"}).to_string(),
        )
        .await
        .unwrap(),
    ];
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [400, 400, 413, 404, 404, 429]);
    for res in answers {
        assert_documented(&doc, status, "post", res).await;
    }

    let communes = "/api/v1/communes";
    for (query, expected) in [("?province=1", 200), ("?province=x", 400), ("", 400)] {
        let res = app
            .client
            .get(app.url(&format!("{communes}{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "{query}");
        if expected == 200 {
            let responses = &doc["paths"][communes]["get"]["responses"];
            assert!(responses["200"]["content"]["application/json"].is_object());
        } else {
            assert_documented(&doc, communes, "get", res).await;
        }
    }
    app.stop().await;
}

engine_test!(a_whole_number_written_with_a_zero_fraction_is_read_as_that_integer);
/// `"province": 1.0` is the integer 1 (JSON Schema counts it as an integer, and so does
/// the document); a real fraction is malformed.
async fn a_whole_number_written_with_a_zero_fraction_is_read_as_that_integer(engine: Engine) {
    let app = spawn_app(engine).await;
    let post = |body: Value| app.client.post(app.url("/api/v1/tips")).json(&body).send();
    let mut tip = tip_json("một số có phần lẻ bằng không");
    tip["province"] = json!(1.0);
    tip["commune"] = json!(70.0);
    let res = post(tip.clone()).await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    // Read, not dropped: an unknown commune written the same way is named as such.
    tip["commune"] = json!(999_999.0);
    let res = post(tip.clone()).await.unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["fields"][0]["field"], "commune", "{body}");
    assert_eq!(body["fields"][0]["code"], "error.unknown_commune");

    for bad in [json!(1.5), json!(1e300), json!("1")] {
        tip["province"] = bad.clone();
        tip["commune"] = json!(70);
        let res = post(tip.clone()).await.unwrap();
        assert_eq!(res.status(), 400, "province {bad}");
    }
    app.stop().await;
}

engine_test!(the_documents_examples_reach_a_201);
/// The request example in the document is a tip the API takes, and the answer looks like
/// the answer's example.
async fn the_documents_examples_reach_a_201(engine: Engine) {
    let app = spawn_app(engine).await;
    let doc = document(&app).await;
    let example = example_of(&doc["components"]["schemas"]["NewTip"]);
    assert!(example.is_object(), "NewTip has an example");
    let res = app
        .client
        .post(app.url("/api/v1/tips"))
        .json(&example)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let answer: Value = res.json().await.unwrap();
    let answer_example = example_of(&doc["components"]["schemas"]["ReceiptAnswer"]);
    assert_eq!(answer["status"], answer_example["status"]);
    let shape = |r: &Value| {
        r.as_str()
            .unwrap()
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect::<String>()
    };
    assert_eq!(shape(&answer["receipt"]), shape(&answer_example["receipt"]));
    // The receipt it gave opens the tip.
    let res = app.api_status(answer["receipt"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}
