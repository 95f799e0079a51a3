//! Property tests for the client frame decoder: arbitrary input never panics, and every
//! frame that decodes encodes back to something that decodes to the same frame.

use proptest::prelude::*;
use shared_proto::ws::ClientFrame;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[a-z0-9 _/-]{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("subscribe"),
            Just("unsubscribe"),
            Just("post"),
            Just("delete"),
            Just("history"),
            Just("ping"),
            Just("edit"),
            Just("react"),
            Just("typing"),
            Just("👍"),
            Just("❤️"),
            Just("room"),
            Just("text"),
            Just("since"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("ref".to_owned()),
                    Just("payload".to_owned()),
                    Just("room".to_owned()),
                    Just("text".to_owned()),
                    Just("since".to_owned()),
                    Just("limit".to_owned()),
                    Just("before".to_owned()),
                    Just("id".to_owned()),
                    Just("clientId".to_owned()),
                    Just("replyTo".to_owned()),
                    Just("emoji".to_owned()),
                    Just("on".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = ClientFrame::decode(&text);
    }

    #[test]
    fn arbitrary_json_never_panics_and_round_trips(value in json_value()) {
        if let Ok(frame) = ClientFrame::decode(&value.to_string()) {
            let again = ClientFrame::decode(&frame.encode()).expect("re-decodes");
            prop_assert_eq!(again, frame);
        }
    }
}
