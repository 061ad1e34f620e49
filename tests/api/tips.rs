//! A resident's whole path: the form, the receipt, "check my tip", police messages, replies
//! and photos, on every engine.

use crate::helpers::*;
use reqwest::multipart::{Form, Part};
use tinbao::intake::photo::fixtures::GPS_LAT;

/// The receipt shown on the receipt page.
pub fn receipt_from(html: &str) -> String {
    let start = html.find("id=\"receipt\"").expect("receipt element");
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    rest[open..open + close].trim().to_owned()
}

fn tip_form(description: &str) -> Form {
    Form::new()
        .text("lang", "vi")
        .text("category", "hotspot")
        .text("province", "1")
        .text("commune", "70")
        .text("village", "Tổ dân phố 7")
        .text("place_details", "nhà số 12 cuối ngõ")
        .text("occurred_at", "tối qua, khoảng 22 giờ")
        .text("description", description.to_owned())
        .text("website", "")
        .text("action", "submit")
}

fn jpeg_part(bytes: Vec<u8>) -> Part {
    Part::bytes(bytes)
        .file_name("IMG_0001.jpg")
        .mime_str("image/jpeg")
        .unwrap()
}

engine_test!(form_tip_receipt_status_police_message_reply_and_photo);
async fn form_tip_receipt_status_police_message_reply_and_photo(engine: Engine) {
    let app = spawn_app(engine).await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Gửi tin báo"), "Vietnamese by default");
    assert!(html.contains("name=\"description\""));

    let form = tip_form("Có người bán ma túy ở quán nước")
        .part("photos", jpeg_part(jpeg_with_gps(64, 48)));
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let res = follow_filed(&app.client, &app.base, res).await;
    assert_eq!(res.status(), 200, "{engine:?}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let receipt = receipt_from(&html);
    assert_eq!(receipt.len(), 19, "receipt shown as 4-4-4-4: {receipt}");
    assert!(
        !html.contains("Có người bán"),
        "the receipt page shows nothing of the tip"
    );

    // Check my tip: received, no messages yet.
    let res = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", receipt.as_str()), ("lang", "vi")])
        .send()
        .await
        .unwrap();
    // Post/redirect/get: the status page is a GET shown once (Back never resends).
    let res = crate::helpers::follow_filed(&app.client, &app.base, res).await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(html.contains("Đã tiếp nhận"), "{html}");
    assert!(html.contains("id=\"status-help\"") && html.contains("Các trạng thái nghĩa là gì?"));

    // The police write; the tipster reads it with the receipt.
    let ids = app.raw_tip_ids().await;
    assert_eq!(ids.len(), 1);
    assert!(app
        .state
        .intake
        .police_message(&ids[0], "Cảm ơn, bạn có biết giờ mở cửa không?")
        .await
        .unwrap());
    let html = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", receipt.as_str())])
        .send()
        .await
        .unwrap();
    let html = crate::helpers::follow_filed(&app.client, &app.base, html)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("bạn có biết giờ mở cửa không?"));

    // The tipster answers with text and a photo.
    let reply = Form::new()
        .text("receipt", receipt.clone())
        .text("lang", "vi")
        .text("message", "Mở cửa từ 21 giờ")
        .part("photo", jpeg_part(jpeg_with_gps(32, 32)));
    let res = app
        .client
        .post(app.url("/status/reply"))
        .multipart(reply)
        .send()
        .await
        .unwrap();
    let res = follow_filed(&app.client, &app.base, res).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Đã gửi"), "{html}");
    assert!(html.contains("Mở cửa từ 21 giờ"));

    // The API sees the same conversation.
    let v: serde_json::Value = app.api_status(&receipt).await.json().await.unwrap();
    assert_eq!(v["status"], "received");
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    assert_eq!(v["messages"][0]["author"], "police");
    assert_eq!(v["messages"][1]["author"], "tipster");
    assert_eq!(v["messages"][1]["photos"], 1);

    // Both photos are stored, re-encoded, with no EXIF or GPS left.
    let opened = app.state.intake.open_tip(&ids[0]).await.unwrap().unwrap();
    assert_eq!(opened.description, "Có người bán ma túy ở quán nước");
    assert_eq!(opened.place_details.as_deref(), Some("nhà số 12 cuối ngõ"));
    assert_eq!(opened.village_text.as_deref(), Some("Tổ dân phố 7"));
    let attachments = app.state.intake.store().attachments(&ids[0]).await.unwrap();
    assert_eq!(attachments.len(), 2);
    for a in attachments {
        let jpeg = app
            .state
            .intake
            .open_attachment(&ids[0], &a.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert!(!contains(&jpeg, b"Exif"), "EXIF removed");
        assert!(!contains(&jpeg, &GPS_LAT), "GPS removed");
        assert!(!contains(&jpeg, b"secret-comment-tinbao"));
    }
    app.stop().await;
}

engine_test!(priority_deadline_and_routing_follow_the_domain);
async fn priority_deadline_and_routing_follow_the_domain(engine: Engine) {
    let app = spawn_app(engine).await;
    let store = app.state.intake.store().clone();
    let mut urgent = tip_json("Người ngáo đá cầm dao ngoài chợ");
    urgent["category"] = "psychosis".into();
    urgent["happening_now"] = true.into();
    app.api_tip(urgent).await;
    let mut province_only = tip_json("Có điểm sử dụng ma túy");
    province_only["commune"] = serde_json::Value::Null;
    app.api_tip(province_only).await;
    let mut unplaced = tip_json("Không rõ ở đâu");
    unplaced["commune"] = serde_json::Value::Null;
    unplaced["province"] = serde_json::Value::Null;
    unplaced["category"] = "other".into();
    app.api_tip(unplaced).await;
    let ids = app.raw_tip_ids().await;
    let a = store.tip(&ids[0]).await.unwrap().unwrap();
    assert_eq!(a.priority, 0, "psychosis happening now is urgent");
    assert_eq!(a.due_at - a.created_at, 3_600_000, "due within the hour");
    assert_eq!((a.province_code, a.commune_code), (Some(1), Some(70)));
    assert_eq!(a.status, "new");
    let b = store.tip(&ids[1]).await.unwrap().unwrap();
    assert_eq!((b.province_code, b.commune_code), (Some(1), None));
    assert_eq!(b.due_at - b.created_at, 24 * 3_600_000);
    let c = store.tip(&ids[2]).await.unwrap().unwrap();
    assert_eq!((c.province_code, c.commune_code), (None, None));
    assert_eq!(c.priority, 3);
    app.stop().await;
}

engine_test!(a_listed_village_is_kept_as_queue_metadata);
async fn a_listed_village_is_kept_as_queue_metadata(engine: Engine) {
    let app = spawn_app(engine).await;
    let store = app.state.intake.store().clone();
    let village = store.add_village(70, "Tổ dân phố số 3").await.unwrap();
    let mut tip = tip_json("Có người lạ bán hàng");
    tip["village"] = "tổ dân phố số 3".into();
    app.api_tip(tip).await;
    let html = app
        .client
        .post(app.url("/tips"))
        .multipart(
            Form::new()
                .text("province", "1")
                .text("commune", "70")
                .text("action", "pick_province"),
        )
        .send()
        .await
        .unwrap();
    // The picker answers with a redirect to a GET of the draft (Back and reload never
    // send the form again).
    assert!(html.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/?draft="));
    let html = crate::helpers::follow_filed(&app.client, &app.base, html)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<option value=\"Tổ dân phố số 3\">"),
        "the commune's villages are offered"
    );
    // Without script, the commune's own button lists its villages, keeping what was typed.
    let html = app
        .client
        .post(app.url("/tips"))
        .multipart(
            Form::new()
                .text("province", "1")
                .text("commune", "70")
                .text("description", "giữ nguyên")
                .text("action", "pick_commune"),
        )
        .send()
        .await
        .unwrap();
    let to = html.headers()["location"].to_str().unwrap().to_owned();
    let html = crate::helpers::follow_filed(&app.client, &app.base, html)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("<option value=\"Tổ dân phố số 3\">"));
    assert!(html.contains("giữ nguyên"));
    // A reload shows the same draft; a made-up or expired one a fresh form that says so.
    let again = app.client.get(app.url(&to)).send().await.unwrap();
    assert_eq!(again.headers()["cache-control"], "no-store");
    assert!(again.text().await.unwrap().contains("giữ nguyên"));
    let gone = app
        .client
        .get(app.url(&format!("/?draft={}", "ab".repeat(16))))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(gone.contains("Bản nháp đó không còn được giữ"));
    assert!(!gone.contains("giữ nguyên"));
    // With script, the API gives them as soon as the commune is chosen.
    let names: Vec<String> = app
        .client
        .get(app.url("/api/v1/villages?commune=70"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names, ["Tổ dân phố số 3"]);
    let none: Vec<String> = app
        .client
        .get(app.url("/api/v1/villages?commune=999999"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.is_empty(), "an unknown commune lists nothing");
    let bad = app
        .client
        .get(app.url("/api/v1/villages?commune=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let ids = app.raw_tip_ids().await;
    let row = store.tip(&ids[0]).await.unwrap().unwrap();
    assert_eq!(row.village_id, Some(village));
    assert!(row.village_text.is_none());
    app.stop().await;
}

#[tokio::test]
async fn bad_photos_are_refused_with_a_clear_message_and_the_text_kept() {
    let app = spawn_app(Engine::Sqlite).await;
    // A PNG header claiming 100000 x 100000 pixels: a decompression bomb.
    let mut bomb = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    bomb.extend_from_slice(b"IHDR");
    bomb.extend_from_slice(&100_000u32.to_be_bytes());
    bomb.extend_from_slice(&100_000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (bomb, "độ phân giải quá lớn"),
        (
            b"GIF89a\x01\x00\x01\x00".to_vec(),
            "Chỉ nhận ảnh JPEG, PNG hoặc WebP",
        ),
        (vec![0u8; 10 * 1024 * 1024 + 1], "Ảnh quá lớn"),
    ];
    for (bytes, message) in cases {
        let form = tip_form("Nội dung cần giữ lại 123").part("photos", jpeg_part(bytes));
        let res = app
            .client
            .post(app.url("/tips"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);
        let html = res.text().await.unwrap();
        assert!(html.contains(message), "{message}: {html}");
        assert!(html.contains("Nội dung cần giữ lại 123"), "typed text kept");
        assert!(html.contains("nhà số 12 cuối ngõ"));
    }
    assert!(app.raw_tip_ids().await.is_empty(), "nothing stored");
    app.stop().await;
}

/// The submission token of a page's form.
fn submission_in(html: &str) -> String {
    let at = html
        .find("name=\"submission\" value=\"")
        .expect("a submission token");
    let rest = &html[at + "name=\"submission\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

engine_test!(a_form_sent_twice_files_one_tip_and_its_receipt_shows_once);
async fn a_form_sent_twice_files_one_tip_and_its_receipt_shows_once(engine: Engine) {
    let app = spawn_app(engine).await;
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = submission_in(&html);
    assert_eq!(token.len(), 32);
    let post = |description: &'static str| {
        let form = tip_form(description).text("submission", token.clone());
        app.client.post(app.url("/tips")).multipart(form).send()
    };
    // A double tap: both sent at once.
    let (a, b) = tokio::join!(
        post("Có người bán ma túy ở chợ đêm"),
        post("Có người bán ma túy ở chợ đêm")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.status(), b.status()),
        (303.try_into().unwrap(), 303.try_into().unwrap())
    );
    assert_eq!(app.raw_tip_ids().await.len(), 1, "[{engine:?}] one tip");
    // The browser shows the answer to the last one: the receipt, once.
    let shown = follow_filed(&app.client, &app.base, b)
        .await
        .text()
        .await
        .unwrap();
    let receipt = receipt_from(&shown);
    assert_eq!(receipt.len(), 19);
    // The receipt card: copy, save, print (shown by the script), "I wrote it down", and
    // what happens next in plain words.
    for id in [
        "copy-receipt",
        "save-receipt",
        "print-receipt",
        "receipt-kept",
        "what-next",
    ] {
        assert!(shown.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(shown.contains("Tiếp theo sẽ thế nào?"));
    // A reload of the receipt page (the same cookie again) shows no receipt.
    let again = follow_filed(&app.client, &app.base, a)
        .await
        .text()
        .await
        .unwrap();
    assert!(!again.contains(&receipt), "shown once");
    assert!(again.contains("id=\"receipt-shown\""), "{again}");
    // The same URL opened later, without the cookie: nothing.
    let later = app
        .client
        .get(app.url("/tips/receipt"))
        .send()
        .await
        .unwrap();
    assert_eq!(later.headers()["cache-control"], "no-store");
    assert!(!later.text().await.unwrap().contains(&receipt));
    // The POST sent again (Back then resubmit, a retrying connection): still one tip, and
    // no receipt again.
    let res = post("Có người bán ma túy ở chợ đêm").await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers().get("set-cookie").is_none(), "no second view");
    let html = follow_filed(&app.client, &app.base, res)
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(&receipt));
    assert_eq!(
        app.raw_tip_ids().await.len(),
        1,
        "[{engine:?}] still one tip"
    );
    // A form refused for an error keeps its token; corrected, it files.
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token2 = submission_in(&html);
    let bad = tip_form("").text("submission", token2.clone());
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert_eq!(submission_in(&html), token2, "the same token comes back");
    let good = tip_form("Thanh niên tụ tập hút bóng cười").text("submission", token2);
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(good)
        .send()
        .await
        .unwrap();
    let html = follow_filed(&app.client, &app.base, res)
        .await
        .text()
        .await
        .unwrap();
    assert_ne!(receipt_from(&html), receipt);
    assert_eq!(app.raw_tip_ids().await.len(), 2);

    // A reply sent twice is one message; its page shows once, then asks for the receipt.
    let status = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", receipt.as_str())])
        .send()
        .await
        .unwrap();
    let status = crate::helpers::follow_filed(&app.client, &app.base, status)
        .await
        .text()
        .await
        .unwrap();
    let reply_token = submission_in(&status);
    let reply = || {
        let form = Form::new()
            .text("receipt", receipt.clone())
            .text("submission", reply_token.clone())
            .text("message", "Họ bán từ 21 giờ");
        app.client
            .post(app.url("/status/reply"))
            .multipart(form)
            .send()
    };
    let first = reply().await.unwrap();
    let second = reply().await.unwrap();
    let page = follow_filed(&app.client, &app.base, first)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Họ bán từ 21 giờ") && page.contains("Đã gửi"),
        "{page}"
    );
    let reload = follow_filed(&app.client, &app.base, second).await;
    assert_eq!(
        reload.status(),
        303,
        "the status page once; then the receipt form"
    );
    assert_eq!(reload.headers()["location"], "/status");
    let ids = app.raw_tip_ids().await;
    let store = app.state.intake.store();
    let mut messages = 0;
    for id in &ids {
        messages += store.messages(id).await.unwrap().len();
    }
    assert_eq!(messages, 1, "[{engine:?}] one reply");
    app.stop().await;
}

engine_test!(the_form_says_call_113_and_an_urgent_tip_must_name_its_province);
async fn the_form_says_call_113_and_an_urgent_tip_must_name_its_province(engine: Engine) {
    let app = spawn_app(engine).await;
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let top = html.find("id=\"call-113\"").expect("a 113 line");
    assert!(
        top < html.find("id=\"tip-form\"").unwrap(),
        "above the form"
    );
    assert!(html.contains("href=\"tel:113\""));
    assert!(html.contains("id=\"urgent-113\""), "on the urgent choice");
    // Psychosis, or anything happening now, with no place: asked for the province,
    // everything typed kept, nothing stored.
    for (category, now) in [("psychosis", false), ("dealing", true)] {
        let mut form = Form::new()
            .text("lang", "vi")
            .text("category", category)
            .text("place_details", "gần cổng chợ")
            .text("description", "Một người ngáo đá đang cầm dao đuổi người");
        if now {
            form = form.text("happening_now", "1");
        }
        let res = app
            .client
            .post(app.url("/tips"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "[{engine:?}] {category}");
        let html = res.text().await.unwrap();
        assert!(html.contains("chọn ít nhất tỉnh"), "{html}");
        assert!(
            html.contains("href=\"#f-province\""),
            "the summary leads to the field"
        );
        assert!(html.contains("Một người ngáo đá đang cầm dao đuổi người"));
        assert!(html.contains("gần cổng chợ"));
    }
    assert!(app.raw_tip_ids().await.is_empty());
    // With the province it files, urgent, in the province's queue.
    let form = Form::new()
        .text("lang", "vi")
        .text("category", "psychosis")
        .text("happening_now", "1")
        .text("province", "1")
        .text("description", "Một người ngáo đá đang cầm dao đuổi người");
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let ids = app.raw_tip_ids().await;
    let row = app.state.store.tip(&ids[0]).await.unwrap().unwrap();
    assert_eq!((row.province_code, row.commune_code), (Some(1), None));
    assert_eq!(row.priority, tinbao::tips::Priority::Urgent.as_i64());
    app.stop().await;
}

engine_test!(a_contact_typed_without_its_box_is_refused_and_kept_never_dropped);
async fn a_contact_typed_without_its_box_is_refused_and_kept_never_dropped(engine: Engine) {
    let app = spawn_app(engine).await;
    let form = tip_form("Có người bán ma túy ở quán nước").text("contact", "0912 345 678");
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "[{engine:?}]");
    let html = res.text().await.unwrap();
    assert!(html.contains("chưa đánh dấu ô"), "{html}");
    assert!(html.contains("href=\"#f-contact\""));
    assert!(
        html.contains("value=\"0912 345 678\""),
        "the contact is kept"
    );
    assert!(html.contains("Có người bán ma túy ở quán nước"));
    assert!(app.raw_tip_ids().await.is_empty());
    // Ticked, the officer sees it.
    let form = tip_form("Có người bán ma túy ở quán nước")
        .text("contact_opt_in", "1")
        .text("contact", "0912 345 678");
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let ids = app.raw_tip_ids().await;
    let opened = app.state.intake.open_tip(&ids[0]).await.unwrap().unwrap();
    assert_eq!(opened.contact.as_deref(), Some("0912 345 678"));
    // The form gives the safety advice and a quick exit.
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"advice\"") && html.contains("Đừng ghi tên bạn"));
    assert!(html.contains("id=\"quick-exit\" href=\"/exit\""));
    let exit = app.client.get(app.url("/exit")).send().await.unwrap();
    assert_eq!(exit.status(), 303);
    assert_eq!(exit.headers()["location"], "https://www.google.com/");
    app.stop().await;
}

engine_test!(photos_are_kept_across_a_form_error_and_filed_with_the_corrected_form);
async fn photos_are_kept_across_a_form_error_and_filed_with_the_corrected_form(engine: Engine) {
    let app = spawn_app(engine).await;
    let html = app
        .client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = submission_in(&html);
    // No description: refused, the two photos held, the error in an error box.
    let form = tip_form("")
        .text("submission", token.clone())
        .part("photos", jpeg_part(jpeg_with_gps(40, 30)))
        .part("photos", jpeg_part(jpeg_with_gps(30, 40)));
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422, "[{engine:?}]");
    let html = res.text().await.unwrap();
    assert!(
        html.contains("id=\"photos-held\"") && html.contains("Đã giữ 2 ảnh"),
        "{html}"
    );
    assert!(html.contains("class=\"errors\""));
    assert!(
        !html.contains("chọn lại ảnh"),
        "not asked to choose them again"
    );
    // The corrected form, without choosing them again, files both.
    let form = tip_form("Có người bán ma túy ở quán nước").text("submission", token);
    let res = app
        .client
        .post(app.url("/tips"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let ids = app.raw_tip_ids().await;
    let photos = app.state.intake.store().attachments(&ids[0]).await.unwrap();
    assert_eq!(photos.len(), 2, "[{engine:?}] both photos filed");
    app.stop().await;
}

engine_test!(a_wrong_receipt_comes_back_in_its_field_to_be_corrected);
async fn a_wrong_receipt_comes_back_in_its_field_to_be_corrected(engine: Engine) {
    let app = spawn_app(engine).await;
    for typed in ["1234-5678-9012-345", "0000-0000-0000-0000"] {
        let html = app
            .client
            .post(app.url("/status"))
            .form(&[("receipt", typed)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("id=\"status-error\""), "{html}");
        assert!(
            html.contains(&format!("value=\"{typed}\"")),
            "[{engine:?}] {typed} kept"
        );
    }
    app.stop().await;
}

engine_test!(wrong_receipts_get_the_same_generic_answer);
async fn wrong_receipts_get_the_same_generic_answer(engine: Engine) {
    let app = spawn_app(engine).await;
    let receipt = app.api_tip(tip_json("Tin thật")).await;
    let wrong = if receipt.starts_with('0') {
        "1111-1111-1111-1111"
    } else {
        "0000-0000-0000-0000"
    };
    let res = app.api_status(wrong).await;
    assert_eq!(res.status(), 404);
    let not_found: serde_json::Value = res.json().await.unwrap();
    let res = app.api_status("not a receipt").await;
    assert_eq!(res.status(), 404);
    let malformed: serde_json::Value = res.json().await.unwrap();
    assert_eq!(not_found, malformed, "malformed and unknown look alike");
    let html = app
        .client
        .post(app.url("/status"))
        .form(&[("receipt", wrong)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Không tìm thấy tin báo"));
    assert_eq!(app.api_status(&receipt).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_receipt_check_takes_the_floor_time_whether_right_or_wrong() {
    let app = spawn_app_with(Engine::Sqlite, |c| c.status_floor_ms = 300).await;
    let receipt = app.api_tip(tip_json("Tin")).await;
    for r in [receipt.as_str(), "1234-1234-1234-1234", "x"] {
        let start = std::time::Instant::now();
        app.api_status(r).await;
        assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    }
    app.stop().await;
}
