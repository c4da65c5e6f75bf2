// mimalloc: see tributary_engine::ChainAllocator.
#[global_allocator]
static GLOBAL: tributary_engine::ChainAllocator = tributary_engine::ChainAllocator;

fn main() -> std::process::ExitCode {
    tributary_engine::service_main::<tributary_blocklists::Blocklists>()
}
