tributary_engine::chain_main!(tributary_mailings::Mailings);
