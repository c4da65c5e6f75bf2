fn main() -> std::process::ExitCode {
    tributary_engine::service_main::<tributary_subscriptions::Subscriptions>()
}
