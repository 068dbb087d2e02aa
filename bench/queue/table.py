#!/usr/bin/python3
"""table.py RESULTS_DIR - ackd beside its peers, as a markdown table.

Reads the raw result files the runs left in RESULTS_DIR (one line per run:
'label<TAB>k=v k=v ...': ackd.txt from bench/queue/run.sh, fsync.txt,
beanstalkd.txt, bullmq.txt, postgres.txt, rabbitmq.txt from the peers kit),
takes the median of each figure over the repetitions and prints, per
system, durable enqueue/s, claim+ack/s and idle end-to-end p50/p99, with
the ratio to ackd. Where a peer was measured in several configurations of
the same durability, the best of them is shown (named in the notes).
Higher ratios are better for ackd: throughput ackd/peer, latency peer/ackd.
"""
import collections
import os
import re
import statistics
import sys

rows = collections.defaultdict(lambda: collections.defaultdict(list))


def load(path):
    for line in open(path):
        if '\t' not in line:
            continue
        label, rest = line.rstrip('\n').split('\t', 1)
        for k, v in re.findall(r'(\w+)=([-\d.]+)', rest):
            try:
                rows[label][k].append(float(v))
            except ValueError:
                pass


def med(label, key):
    vs = rows.get(label, {}).get(key)
    return statistics.median(vs) if vs else None


def best(labels, key, lower=False):
    """(value, label) of the best median among labels that were measured."""
    got = [(med(l, key), l) for l in labels if med(l, key) is not None]
    if not got:
        return None, None
    return (min if lower else max)(got)


# system -> metric -> (candidate labels, key)
SYSTEMS = [
    ('ackd (HTTP, SQLite WAL, sync=full)', {
        'enq': (['ackd submit POST->202 c64'], 'req_per_s'),
        'enq256': (['ackd submit POST->202 c256'], 'req_per_s'),
        'claim': (['ackd claim+complete (worker pools)'], 'jobs_per_s'),
        'lat': (['ackd e2e latency'], None),
    }),
    ('disk: 256-B append + fdatasync', {
        'enq': (['disk 256B append+fdatasync'], 'ops_per_s'),
        'lat': (['disk 256B append+fdatasync'], None),
    }),
    ('beanstalkd -f0 (fsync every write)', {
        'enq': (['beanstalkd f0 put (2 procs)'], 'jobs_per_s'),
        'claim': (['beanstalkd f0 reserve+delete (2 procs)'], 'jobs_per_s'),
        'lat': (['beanstalkd f0 e2e latency'], None),
    }),
    ('Redis AOF always + BullMQ', {
        'enq': (['bullmq aof-always Queue.add (2 procs x 64 in flight)'], 'jobs_per_s'),
        'claim': (['bullmq aof-always worker conc50 (1 proc)'], 'jobs_per_s'),
        'lat': (['bullmq aof-always e2e latency'], None),
    }),
    ('PostgreSQL SKIP LOCKED queue', {
        'enq': (['postgres enqueue 1/tx (8 conns)'], 'jobs_per_s'),
        'claim': (['postgres claim+complete (4 workers)', 'postgres claim+complete (8 workers)'],
                  'jobs_per_s'),
        'lat': (['postgres e2e latency LISTEN/NOTIFY'], None),
    }),
    ('RabbitMQ durable + confirms', {
        'enq': (['rabbitmq publish persistent+confirm (2 procs, amqplib, 64 in flight)',
                 'rabbitmq publish persistent+confirm (2 procs, pika, 1 in flight)'], 'jobs_per_s'),
        'claim': (['rabbitmq consume manual-ack (2 procs)',
                   'rabbitmq consume manual-ack after pipelined publish (2 procs)'], 'jobs_per_s'),
        'lat': (['rabbitmq e2e latency'], None),
    }),
]

BATCH = [
    ('ackd POST tasks:batch (1000 a request, 1 conn)', 'ackd tasks:batch fill', 'jobs_per_s'),
    ('PostgreSQL 1000 jobs a transaction (1 conn)', 'postgres enqueue batched 1000/tx (1 conn)', 'jobs_per_s'),
    ('BullMQ Queue.addBulk (1000 a call)', 'bullmq aof-always Queue.addBulk (1 proc, batch 1000)', 'jobs_per_s'),
]


def fmt(v, unit=''):
    if v is None:
        return '—'
    return f'{v:,.0f}{unit}'


def ratio(a, b):
    if a is None or b is None or b == 0:
        return '—'
    return f'{a / b:.2f}×'


def main():
    d = sys.argv[1]
    for name in ('ackd', 'fsync', 'beanstalkd', 'bullmq', 'postgres', 'rabbitmq'):
        p = os.path.join(d, name + '.txt')
        if os.path.exists(p):
            load(p)
    vals, notes = [], []
    for sysname, m in SYSTEMS:
        v = {}
        for metric, (labels, key) in m.items():
            if metric == 'lat':
                v['p50'], l = best(labels, 'p50_us', lower=True)
                v['p99'] = med(l, 'p99_us') if l else None
            else:
                v[metric], l = best(labels, key)
            if l and len(labels) > 1:
                notes.append(f'{sysname}, {metric}: best of {len(labels)} configurations, "{l}"')
        vals.append((sysname, v))
    a = vals[0][1]
    print('| system | durable enqueue/s | claim+ack /s | idle e2e p50 / p99 (µs) '
          '| ackd ÷ peer: enqueue | claim+ack | peer ÷ ackd: p50 | p99 |')
    print('|---|---|---|---|---|---|---|---|')
    for sysname, v in vals:
        lat = f"{fmt(v.get('p50'))} / {fmt(v.get('p99'))}"
        enq = fmt(v.get('enq'))
        if sysname.startswith('ackd') and v.get('enq256') is not None:
            enq += f" (c256: {fmt(v['enq256'])})"
        if sysname.startswith('ackd'):
            print(f"| **{sysname}** | **{enq}** | **{fmt(v.get('claim'))}** | **{lat}** | | | | |")
            continue
        print(f"| {sysname} | {enq} | {fmt(v.get('claim'))} | {lat} | "
              f"{ratio(a.get('enq'), v.get('enq'))} | {ratio(a.get('claim'), v.get('claim'))} | "
              f"{ratio(v.get('p50'), a.get('p50'))} | {ratio(v.get('p99'), a.get('p99'))} |")
    print()
    print('| batched enqueue | jobs/s | ackd ÷ peer |')
    print('|---|---|---|')
    ab = med(BATCH[0][1], BATCH[0][2])
    for name, label, key in BATCH:
        v = med(label, key)
        print(f"| {name} | {fmt(v)} | {'' if label.startswith('ackd') else ratio(ab, v)} |")
    if notes:
        print()
        for n in notes:
            print(f'- {n}')


if __name__ == '__main__':
    main()
