#!/usr/bin/env bash
# Same output from an older dmaplay and this one, on small recordings made
# here (plain with card drops, a ring wrapped mid-file, flipped header and
# payload bits, torn newest slots, a short index, a stripe set with a member
# missing, two scans): inspect, verify (with and without the index, a
# range), list and reindex. The JSON reports must be equal without their
# timing fields (seconds, mb_per_s) and paths, stderr and exit codes equal,
# and the rebuilt index files equal byte for byte. Prints one line per check
# and the number of differences (exit 1 if any).
#
#   OLD=/path/to/old/dmaplay bash bench/same-output.sh
#
# Files live in $DIR (default /dev/shm, ~60 MB) and are removed on exit.
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OLD=${OLD:?give OLD=/path/to/an/older/dmaplay}
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml" -p dmarec-recorder -p dmarec-tools
NEW=$REPO/target/release/dmaplay DMAREC=$REPO/target/release/dmarec
W=$(mktemp -d "${DIR:-/dev/shm}/dmaplay-same.XXXXXX"); trap 'rm -rf "$W"' EXIT
fails=0
norm() { python3 -c '
import json,sys
d=json.load(sys.stdin)
def strip(o):
    if isinstance(o,dict):
        return {k:strip(v) for k,v in o.items() if k not in ("seconds","mb_per_s","index","path") }
    if isinstance(o,list): return [strip(x) for x in o]
    return o
print(json.dumps(strip(d),indent=1,sort_keys=True))'; }
same() { # same <name> args...   (runs both; compares normalized JSON, exit codes, stderr)
    local name=$1; shift
    "$OLD" "$@" > $W/o.json 2>$W/o.err; local ro=$?
    "$NEW" "$@" > $W/n.json 2>$W/n.err; local rn=$?
    if [ $ro != $rn ] || ! diff <(norm < $W/o.json 2>/dev/null || cat $W/o.json) <(norm < $W/n.json 2>/dev/null || cat $W/n.json) >/dev/null || ! diff $W/o.err $W/n.err >/dev/null; then
        echo "DIFF $name (rc $ro vs $rn)"; diff <(norm < $W/o.json) <(norm < $W/n.json) | head -10; diff $W/o.err $W/n.err | head -5; fails=$((fails+1))
    else echo "same $name (rc $ro, $(wc -c < $W/n.json) B)"; fi
}
same_reindex() { # same_reindex <name> targets...
    local name=$1; shift
    "$OLD" reindex --quiet --json --force --index $W/old.idx "$@" > $W/o.json 2>$W/o.err; local ro=$?
    "$NEW" reindex --quiet --json --force --index $W/new.idx "$@" > $W/n.json 2>$W/n.err; local rn=$?
    if [ $ro != $rn ] || ! cmp -s $W/old.idx $W/new.idx || ! diff <(norm < $W/o.json) <(norm < $W/n.json) >/dev/null; then
        echo "DIFF reindex $name (rc $ro vs $rn)"; cmp $W/old.idx $W/new.idx; diff <(norm < $W/o.json) <(norm < $W/n.json) | head -20; fails=$((fails+1))
    else echo "same reindex $name (rc $ro, index $(wc -c < $W/new.idx) B, torn $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(len(d[\"torn\"]), d[\"scan\"][\"counts\"])" $W/n.json))"; fi
}
flip() { python3 -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^(1<<int(sys.argv[3]))]))' "$@"; }
all() { # all <name> <idx> targets...
    local name=$1 idx=$2; shift 2
    same "$name inspect" inspect --json --index $idx "$@"
    same "$name verify" verify --quiet --json --pattern --index $idx "$@"
    same "$name verify --range" verify --quiet --json --range 100..300 --index $idx "$@"
    same "$name verify no index" verify --quiet --json "$@"
    same "$name inspect no index" inspect --json "$@"
    same "$name list" list --json "$@"
    same_reindex "$name" "$@"
}
S=$((8192))
# 1. plain, card drops, 3 channels
$DMAREC record --source sim --target $W/a.img --file-size $((3000*S + (2<<20))) --index $W/a.idx --payload-size 4K --size $((2000*4096)) --channels 3 --sim-drop-every 97 --force --quiet --json >/dev/null
all plain $W/a.idx $W/a.img
# 2. ring wrapped mid-file
$DMAREC record --source sim --target $W/r.img --file-size $((1000*S + (2<<20))) --index $W/r.idx --payload-size 4K --size $((2500*4096)) --on-full wrap --force --quiet --json >/dev/null
all ring $W/r.idx $W/r.img
# 3. damage: flipped header bits and payload bits (ring), torn newest slot
for o in $((1048576 + 10*S + 100)) $((1048576 + 200*S + 5000)) $((1048576 + 777*S + 40)); do flip $W/r.img $o 3; done
all "ring damaged" $W/r.idx $W/r.img
# torn: the newest slot's payload (ring newest = slot 2499 at position 2499 % capacity)
cap=$(python3 -c "print((( $((1000*S + (2<<20))) //4096*4096 - 4096) - 1048576)//$S)")
pos=$(( 2499 % cap )); flip $W/r.img $((1048576 + pos*S + 4096 + 10)) 1
all "ring torn" $W/r.idx $W/r.img
# 4. plain with a destroyed header mid-way and a truncated index
flip $W/a.img $((1048576 + 500*S + 4)) 0
head -c $((8192 + 1500*64 + 30)) $W/a.idx > $W/a2.idx
all "plain damaged, short index" $W/a2.idx $W/a.img
# 5. two members, one missing
$DMAREC record --source sim --target $W/m0.img --target $W/m1.img --file-size $((700*S + (2<<20))) --index $W/m.idx --payload-size 4K --size $((1200*4096)) --force --quiet --json >/dev/null
all "stripe" $W/m.idx $W/m0.img $W/m1.img
same "stripe verify missing member" verify --quiet --json --index $W/m.idx $W/m0.img
same "stripe inspect missing member" inspect --json --index $W/m.idx $W/m0.img
# 6. two scans
$DMAREC record --source sim --target $W/s.img --file-size $((3000*S + (2<<20))) --index $W/s1.idx --payload-size 4K --size $((800*4096)) --scan one --force --quiet --json >/dev/null
$DMAREC record --source sim --target $W/s.img --index $W/s2.idx --payload-size 4K --size $((900*4096)) --scan two --quiet --json >/dev/null
all "scans" $W/s2.idx $W/s.img
same "scan one verify" verify --quiet --json --scan one --index $W/s1.idx $W/s.img
same_reindex "scan one" --scan one $W/s.img
echo "differences: $fails"
[ "$fails" = 0 ]
