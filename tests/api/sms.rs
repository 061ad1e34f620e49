//! SMS hardening (issue 11, points 16 and 17): a captured Twilio request replayed after
//! the retry window makes nothing; MMS photos join the tip like the web form's, and
//! those that cannot be fetched are noted on the tip and told to the tipster.

use crate::channels::{conversation, receipt_in, tip_of, SID, TIP_NUMBER, TOKEN, WAIT};
use crate::console_support::login_as;
use crate::fakes::twilio::{self, FakeTwilio, Media};
use crate::helpers::{contains, engine_test, jpeg_with_gps, spawn_app_with, Engine, TestApp};
use tinbao::accounts::Role;
use tinbao::intake::photo::fixtures::GPS_LAT;

const PHONE: &str = "+84912345678";
const HOUR_MS: i64 = 3600 * 1000;

async fn app_with(engine: Engine, tw: &FakeTwilio) -> TestApp {
    spawn_app_with(engine, |c| {
        c.sms.twilio = tw.config(TIP_NUMBER);
        c.sms.numbers = vec![tinbao::config::SmsNumber {
            number: TIP_NUMBER.into(),
            commune: 70,
        }];
        c.outbox.backoff_ms = 50;
    })
    .await
}

/// A webhook as Twilio would post it: the signature and the exact body, kept so the very
/// same bytes can be sent again.
struct Signed {
    signature: String,
    body: String,
}

fn signed(app: &TestApp, params: &[(String, String)]) -> Signed {
    let url = format!("{}/hooks/sms/twilio", app.config.public_url);
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Signed {
        signature: twilio::sign(TOKEN, &url, &pairs),
        body: twilio::form_body(&pairs),
    }
}

fn sms(app: &TestApp, sid: &str, text: &str) -> Signed {
    signed(
        app,
        &twilio::incoming_mms(SID, sid, PHONE, TIP_NUMBER, text, &[]),
    )
}

async fn post(app: &TestApp, s: &Signed) -> reqwest::StatusCode {
    app.client
        .post(app.url("/hooks/sms/twilio"))
        .header("X-Twilio-Signature", &s.signature)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(s.body.clone())
        .send()
        .await
        .unwrap()
        .status()
}

engine_test!(twilio_replay_after_the_retry_window_makes_no_tip_and_no_follow_up);
/// A signed tip and a signed follow-up are accepted; 49 hours later (the stored rows'
/// times moved back, past the 48-hour retry window) the very same bytes are posted
/// again: 200, so Twilio would not retry, and no new tip, no new message, no answer.
async fn twilio_replay_after_the_retry_window_makes_no_tip_and_no_follow_up(engine: Engine) {
    let tw = FakeTwilio::start(SID, TOKEN).await;
    let app = app_with(engine, &tw).await;
    let tip_sms = sms(
        &app,
        "SMreplay0000000000000000000000001",
        "TIN Nha so 12 ngo 3 co nguoi ban ma tuy da buoi toi",
    );
    let follow_up = sms(
        &app,
        "SMreplay0000000000000000000000002",
        "Xe may bien 29A-123",
    );
    assert_eq!(post(&app, &tip_sms).await, 200);
    let receipt = receipt_in(&tw.wait_for(1, WAIT).await[0].1).expect("a receipt by SMS");
    let tip = tip_of(&app, &receipt).await;
    assert_eq!(post(&app, &follow_up).await, 200);
    tw.wait_for(2, WAIT).await;
    let before = conversation(&app, &tip).await;
    assert_eq!(before.len(), 1, "{before:?}");

    // Two days pass: whatever the service remembered of these messages is 49 hours old.
    for table in ["inbound_seen", "webhook_replay"] {
        app.exec(&format!(
            "UPDATE {table} SET seen_at = seen_at - {}",
            49 * HOUR_MS
        ))
        .await;
    }
    // The same bytes, replayed: answered as Twilio expects, and dropped.
    assert_eq!(post(&app, &tip_sms).await, 200);
    assert_eq!(post(&app, &follow_up).await, 200);
    // A new message from the same phone is processed after anything queued before it:
    // once its answer is out, the replays would have made theirs.
    let fresh = sms(
        &app,
        "SMreplay0000000000000000000000003",
        "Ho lai den toi nay",
    );
    assert_eq!(post(&app, &fresh).await, 200);
    let sent = tw.wait_for(3, WAIT).await;
    assert!(sent[2].1.contains("Da gui"), "{sent:?}");
    assert_eq!(tw.sent().len(), 3, "no answer to a replay: {:?}", tw.sent());
    assert_eq!(app.raw_tip_ids().await.len(), 1, "no tip from a replay");
    let after = conversation(&app, &tip).await;
    assert_eq!(after.len(), 2, "only the fresh follow-up joined: {after:?}");
    assert!(after[1].1.contains("toi nay"));

    let store = app.state.intake.store();
    if engine == Engine::Sqlite {
        // The ids are remembered as keyed hashes only.
        for f in std::fs::read_dir(app.dir.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(!contains(&bytes, b"SMreplay"));
        }
    }
    // The memory is bounded: rows older than it are purged, newer ones kept.
    let now = tinbao::clock::now_ms();
    assert_eq!(store.forget_replays(now - 50 * HOUR_MS).await.unwrap(), 0);
    app.exec("UPDATE webhook_replay SET seen_at = 0").await;
    let memory = tinbao::dialog::replay::REPLAY_MEMORY_MS;
    assert_eq!(store.forget_replays(now - memory).await.unwrap(), 3);
    app.stop().await;
}

/// Photos of an MMS as the fake keeps them, and the webhook's media list.
fn media_list(tw: &FakeTwilio, sid: &str, media: Vec<Media>) -> Vec<(String, &'static str)> {
    media
        .into_iter()
        .map(|m| {
            let content_type = match &m {
                Media::File(_, t) => *t,
                _ => "image/jpeg",
            };
            (tw.add_media(sid, m), content_type)
        })
        .collect()
}

fn mms(app: &TestApp, sid: &str, text: &str, media: &[(String, &str)]) -> Signed {
    signed(
        app,
        &twilio::incoming_mms(SID, sid, PHONE, TIP_NUMBER, text, media),
    )
}

async fn photos_of(app: &TestApp, tip_id: &str) -> Vec<Vec<u8>> {
    let intake = &app.state.intake;
    let mut out = Vec::new();
    for a in intake.store().attachments(tip_id).await.unwrap() {
        out.push(
            intake
                .open_attachment(tip_id, &a.id)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    out
}

engine_test!(twilio_mms_photos_join_the_tip_without_their_metadata);
/// An MMS with two photos (and a vCard, which is no photo) makes a tip with both photos,
/// fetched with the account's credentials, re-encoded without EXIF or GPS; a later MMS
/// adds its photo to the tip; one intake cannot read is noted as missing and the tipster
/// is told.
async fn twilio_mms_photos_join_the_tip_without_their_metadata(engine: Engine) {
    let tw = FakeTwilio::start(SID, TOKEN).await;
    let app = app_with(engine, &tw).await;
    let sid = "MMphotos00000000000000000000000001";
    let mut media = media_list(
        &tw,
        sid,
        vec![
            Media::File(jpeg_with_gps(64, 48), "image/jpeg"),
            Media::File(jpeg_with_gps(40, 30), "image/jpeg"),
        ],
    );
    media.push((
        tw.add_media(sid, Media::File(b"BEGIN:VCARD".to_vec(), "text/vcard")),
        "text/vcard",
    ));
    let text = "TIN Co nguoi ban ma tuy o quan nuoc dau cau, toi nao cung co";
    assert_eq!(post(&app, &mms(&app, sid, text, &media)).await, 200);
    let sent = tw.wait_for(1, WAIT).await;
    let receipt = receipt_in(&sent[0].1).expect("a receipt by SMS");
    assert!(!sent[0].1.contains("khong den duoc"), "{}", sent[0].1);
    let tip = tip_of(&app, &receipt).await;
    let photos = photos_of(&app, &tip.id).await;
    assert_eq!(photos.len(), 2, "both photos are on the tip");
    for jpeg in &photos {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert!(!contains(jpeg, b"Exif"), "EXIF removed");
        assert!(!contains(jpeg, &GPS_LAT), "GPS removed");
    }
    assert_eq!(tw.media_requests(), (2, 2), "only images, with credentials");
    assert!(app
        .state
        .store
        .photo_gaps(&tip.id)
        .await
        .unwrap()
        .is_empty());

    // A follow-up MMS: a photo, and a file that says it is a JPEG but is not one.
    let sid = "MMphotos00000000000000000000000002";
    let media = media_list(
        &tw,
        sid,
        vec![Media::File(jpeg_with_gps(32, 32), "image/jpeg")],
    );
    assert_eq!(post(&app, &mms(&app, sid, "Them anh", &media)).await, 200);
    tw.wait_for(2, WAIT).await;
    assert_eq!(photos_of(&app, &tip.id).await.len(), 3);
    let sid = "MMphotos00000000000000000000000003";
    let media = media_list(
        &tw,
        sid,
        vec![Media::File(b"not a jpeg".to_vec(), "image/jpeg")],
    );
    assert_eq!(post(&app, &mms(&app, sid, "Anh nua", &media)).await, 200);
    let sent = tw.wait_for(3, WAIT).await;
    assert!(sent[2].1.contains("Da gui"), "{}", sent[2].1);
    assert!(sent[2].1.contains("1 anh khong den duoc"), "{}", sent[2].1);
    let talk = conversation(&app, &tip).await;
    assert!(talk.iter().any(|(_, t)| t == "Anh nua"), "the text is kept");
    assert_eq!(photos_of(&app, &tip.id).await.len(), 3);
    let gaps = app.state.store.photo_gaps(&tip.id).await.unwrap();
    assert_eq!(gaps.iter().map(|g| g.missing).sum::<i64>(), 1);
    app.stop().await;
}

engine_test!(twilio_mms_photos_that_fail_are_noted_on_the_tip_and_told_to_the_tipster);
/// An MMS whose media 404s, never answers, or is larger than Twilio allows: the tip is
/// stored with the photo that arrived, the console's tip page says how many are missing,
/// and the receipt's SMS tells the tipster to send them again.
async fn twilio_mms_photos_that_fail_are_noted_on_the_tip_and_told_to_the_tipster(engine: Engine) {
    let tw = FakeTwilio::start(SID, TOKEN).await;
    let app = app_with(engine, &tw).await;
    let sid = "MMfail0000000000000000000000000001";
    let media = media_list(
        &tw,
        sid,
        vec![
            Media::File(jpeg_with_gps(64, 48), "image/jpeg"),
            Media::NotFound,
            Media::Stall,
            Media::File(vec![0xFF; 6 * 1024 * 1024], "image/jpeg"),
        ],
    );
    let text = "TIN Tu diem hut o bai dat trong sau truong, chieu nao cung co";
    assert_eq!(post(&app, &mms(&app, sid, text, &media)).await, 200);
    let sent = tw
        .wait_for(1, WAIT + std::time::Duration::from_secs(30))
        .await;
    let answer = &sent[0].1;
    let receipt = receipt_in(answer).expect("the tip is stored: a receipt");
    assert!(answer.contains("3 anh khong den duoc"), "{answer}");
    assert!(answer.contains("gui lai"), "{answer}");
    let tip = tip_of(&app, &receipt).await;
    assert_eq!(photos_of(&app, &tip.id).await.len(), 1);
    let opened = app.state.intake.open_tip(&tip.id).await.unwrap().unwrap();
    assert!(opened.description.contains("Tu diem hut"));

    let officer = login_as(&app, Role::Officer, "officer", None, Some(70)).await;
    let page = officer
        .client
        .get(app.url(&format!("/console/tips/{}", tip.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"photos-missing\""), "{page}");
    assert!(
        page.contains("3 ảnh người báo gửi kèm không tải về được"),
        "{page}"
    );
    app.stop().await;
}
