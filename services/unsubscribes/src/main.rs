tributary_engine::chain_main!(tributary_unsubscribes::Unsubscribes);
