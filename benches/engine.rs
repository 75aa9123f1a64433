//! Event engine throughput: the classic "hold" model. A queue holds N pending events; each
//! step pops the earliest and schedules one new event a pseudo-random delay later, so the
//! queue size stays N. Reported as events per second (criterion "elements").

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use cnisim::engine::EventQueue;
use cnisim::time::{Duration, Instant};

const STEPS: u64 = 100_000;

fn hold(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(STEPS));
    for pending in [16usize, 1_000, 100_000] {
        g.bench_function(format!("hold/{pending}-pending"), |b| {
            b.iter_batched(
                || {
                    let mut q = EventQueue::new();
                    let mut x = 0x2545_f491_4f6c_dd1du64;
                    for i in 0..pending {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        q.schedule(Instant::from_nanos(x % 10_000), i as u64);
                    }
                    (q, x)
                },
                |(mut q, mut x)| {
                    for _ in 0..STEPS {
                        let (t, e) = q.pop_until(Instant::MAX).expect("queue never empties");
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        q.schedule(t + Duration::from_nanos(x % 10_000), e);
                    }
                    q
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, hold);
criterion_main!(benches);
