tributary_engine::chain_main!(tributary_blocklists::Blocklists);
