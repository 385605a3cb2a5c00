//! The OpenAPI document is valid OpenAPI 3 and lists what every operation
//! can answer, so schema-driven clients and fuzzers see the real contract.
//! The validator is `openapi-spec-validator` from PyPI (`.ci/run` installs it).

use ferrodns_api::ApiDoc;
use utoipa::OpenApi;

#[test]
fn the_document_validates_and_lists_every_status() {
    let document = ApiDoc::openapi().to_pretty_json().unwrap();
    let path = std::env::temp_dir().join(format!("ferrodns-openapi-{}.json", std::process::id()));
    std::fs::write(&path, &document).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "openapi-spec-validator (pip install openapi-spec-validator) refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let value: serde_json::Value = serde_json::from_str(&document).unwrap();
    for (path, item) in value["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let public = operation.get("security").is_some();
            if !public {
                for status in ["401", "403", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} does not list {status}");
                }
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "422"] {
                    assert!(responses.contains_key(status), "{method} {path} does not list {status}");
                }
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "path" {
                    let name = parameter["name"].as_str().unwrap();
                    assert!(path.contains(&format!("{{{name}}}")), "{method} {path}: {name} is not in the path");
                }
            }
        }
    }
    let delete_zone = &value["paths"]["/v1/zones/{zone}"]["delete"];
    assert!(delete_zone["responses"]["412"].is_object(), "DELETE of a zone takes If-Match");
}
