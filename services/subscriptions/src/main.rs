tributary_engine::chain_main!(tributary_subscriptions::Subscriptions);
