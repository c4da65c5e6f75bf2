tributary_engine::chain_main!(tributary_users::Users);
