#!/bin/bash
# Bring up a minimal real OpenStack on 127.0.0.1 for cloud-janitor's end-to-end tests, from PyPI and
# Debian packages only: Keystone, Neutron (ML2 with the tiny `fakebind` driver that binds any port),
# Placement, Glance, Nova (fake.FakeDriver) and Cinder (the FakeLoggingVolumeDriver in its wheel), on
# MariaDB and RabbitMQ. Tested on Debian 12, Python 3.11. Needs root (apt-get, service).
#
# Usage: up.sh [BASE_DIR]          (default /tmp/real-openstack; VENV=... reuses a built venv;
#                                  UNPINNED=1 ignores constraints.txt)
#
# Idempotent: when the stack under BASE_DIR is already up and answering, it says so and exits 0; a
# half-started stack is stopped first (down.sh) and brought up afresh (databases are recreated).
#
# What it leaves in BASE_DIR:
#   state/clouds.yaml   clouds `demo` (member of project demo), `demo-appcred` (an application
#                       credential of demo), `other` (member of project other) and `admin`
#   state/stack.json    ids: projects, users, image, flavor, external network `public`, and the network
#                       `shared` (owned by project other, shared with every project)
#   logs/*.log          one log per service and per manage command, kept for CI failures
#                       (dump-logs.sh prints their tails); pids/*.pid, one per process group
set -euo pipefail
BASE=${1:-${TMPDIR:-/tmp}/real-openstack}
mkdir -p "$BASE"
BASE=$(cd "$BASE" && pwd)
VENV=${VENV:-$BASE/venv}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$BASE"/{etc,state,logs,pids}
cd "$BASE"
exec > >(tee -a "$BASE/logs/up.log") 2>&1
T0=$EPOCHREALTIME
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%6.1f", b - a }'; }
step() { echo "[$(elapsed)s] $*"; }

SERVICES="keystone neutron placement glance nova nova-conductor nova-scheduler nova-compute cinder cinder-scheduler cinder-volume"
PORTS="5000 9696 8778 9292 8774 8776"

group_alive() { kill -0 "$1" 2>/dev/null || kill -0 -- "-$1" 2>/dev/null; }
# Up means: every service's process group alive, the ready marker written, and a demo token that
# Neutron, Nova and Cinder accept.
stack_healthy() {
  [ -f state/ready ] && [ -f state/clouds.yaml ] || return 1
  local s
  for s in $SERVICES; do
    [ -f "pids/$s.pid" ] && group_alive "$(cat "pids/$s.pid")" || return 1
  done
  local tok
  tok=$(curl -s -m 10 -D - -o /dev/null -H "Content-Type: application/json" -X POST http://127.0.0.1:5000/v3/auth/tokens -d \
    '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"demo","domain":{"id":"default"},"password":"demopass"}}},"scope":{"project":{"name":"demo","domain":{"id":"default"}}}}}' \
    2>/dev/null | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
  [ -n "$tok" ] || return 1
  local url
  for url in http://127.0.0.1:9696/v2.0/networks http://127.0.0.1:8774/v2.1/servers; do
    [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "X-Auth-Token: $tok" "$url")" = 200 ] || return 1
  done
}

step "up.sh $BASE"
if stack_healthy; then
  step "already up: nothing to do (down.sh $BASE stops it)"
  exit 0
fi
if ls pids/*.pid >/dev/null 2>&1; then
  step "a partial stack is running under $BASE: stopping it first"
  "$HERE/down.sh" "$BASE"
fi
rm -f state/ready

# ---------------------------------------------------------------- system packages
need_apt=()
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v rabbitmq-server >/dev/null || [ -x /usr/sbin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
for tool in jq curl; do command -v $tool >/dev/null || need_apt+=($tool); done
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt: ${need_apt[*]}"
  # another apt-get may hold the dpkg lock on a fresh machine (cloud-init, a parallel job): wait for it
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need_apt[@]}" >/dev/null
fi

# Only one stack fits on a machine: the ports are fixed. Refuse to fight another process for them.
for p in $PORTS; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
    echo "127.0.0.1:$p is already in use (another OpenStack stack, under another BASE_DIR?); stop it first" >&2
    exit 1
  fi
done

step "start mariadb + rabbitmq"
service mariadb start >/dev/null
service rabbitmq-server start >/dev/null
# fast, non-durable DB for tests
mysql -e "SET GLOBAL innodb_flush_log_at_trx_commit=0; SET GLOBAL sync_binlog=0;" || true

# ---------------------------------------------------------------- python
if [ ! -x "$VENV/bin/neutron-db-manage" ] || [ ! -x "$VENV/bin/cinder-manage" ] || [ ! -x "$VENV/bin/gunicorn" ]; then
  step "pip install (neutron keystone nova placement glance cinder) into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
  # pip/setuptools write build/ and *.egg-info into a local source tree: build a copy, not the checkout
  rm -rf "$BASE/fakebind-src" && cp -r "$HERE/fakebind" "$BASE/fakebind-src"
  # the versions tested (constraints.txt); UNPINNED=1 takes the newest from PyPI instead
  CONSTRAINTS=(-c "$HERE/constraints.txt"); [ "${UNPINNED:-0}" = 1 ] && CONSTRAINTS=()
  "$VENV/bin/pip" install -q "${CONSTRAINTS[@]}" neutron keystone nova openstack-placement glance cinder \
    gunicorn PyMySQL "$BASE/fakebind-src"
  step "pip done"
fi
PY=$VENV/bin
"$PY/pip" freeze 2>/dev/null | grep -iE '^(neutron|nova|cinder|keystone|glance|openstack-placement)==' > logs/versions.txt || true

# ---------------------------------------------------------------- databases
step "create databases"
for db in keystone neutron nova_api nova nova_cell0 placement glance cinder; do
  mysql -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db CHARACTER SET utf8mb4;"
done
mysql -e "CREATE USER IF NOT EXISTS 'os'@'127.0.0.1' IDENTIFIED BY 'os'; GRANT ALL ON *.* TO 'os'@'127.0.0.1';"
DB="mysql+pymysql://os:os@127.0.0.1"

# ---------------------------------------------------------------- config
AUTHTOKEN="www_authenticate_uri = http://127.0.0.1:5000
auth_url = http://127.0.0.1:5000
auth_type = password
username = admin
password = secret
project_name = admin
user_domain_id = default
project_domain_id = default
region_name = RegionOne"

rm -rf state/keystone state/neutron state/nova state/glance state/cinder
mkdir -p etc/keystone etc/neutron/plugins/ml2 etc/nova etc/placement etc/glance etc/cinder \
  state/keystone/fernet-keys state/keystone/credential-keys state/neutron/lock state/nova/lock \
  state/glance/images state/glance/staging state/glance/tasks state/glance/lock state/cinder/lock
cp "$VENV/etc/neutron/api-paste.ini" etc/neutron/
cp "$VENV/etc/nova/api-paste.ini" etc/nova/
cp "$VENV/etc/glance/glance-api-paste.ini" etc/glance/
cp "$VENV/etc/cinder/api-paste.ini" "$VENV/etc/cinder/resource_filters.json" etc/cinder/

cat > etc/keystone/keystone.conf <<EOF
[database]
connection = $DB/keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = $BASE/state/keystone/fernet-keys
[credential]
key_repository = $BASE/state/keystone/credential-keys
EOF

cat > etc/neutron/neutron.conf <<EOF
[DEFAULT]
auth_strategy = keystone
core_plugin = ml2
service_plugins = router
api_paste_config = $BASE/etc/neutron/api-paste.ini
state_path = $BASE/state/neutron
transport_url = fake:/
api_workers = 1
rpc_workers = 0
notify_nova_on_port_status_changes = False
notify_nova_on_port_data_changes = False
[database]
connection = $DB/neutron?charset=utf8mb4
[oslo_concurrency]
lock_path = $BASE/state/neutron/lock
[agent]
report_interval = 0
[keystone_authtoken]
$AUTHTOKEN
EOF
cat > etc/neutron/plugins/ml2/ml2_conf.ini <<EOF
[ml2]
type_drivers = flat,vlan,local
project_network_types = local
mechanism_drivers = fakebind
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[securitygroup]
enable_security_group = True
firewall_driver = noop
EOF

cat > etc/placement/placement.conf <<EOF
[api]
auth_strategy = keystone
[placement_database]
connection = $DB/placement
[keystone_authtoken]
$AUTHTOKEN
EOF

cat > etc/glance/glance-api.conf <<EOF
[DEFAULT]
enabled_backends = fs:file
[database]
connection = $DB/glance
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $BASE/state/glance/images
[os_glance_tasks_store]
filesystem_store_datadir = $BASE/state/glance/tasks
[os_glance_staging_store]
filesystem_store_datadir = $BASE/state/glance/staging
[paste_deploy]
flavor = keystone
config_file = $BASE/etc/glance/glance-api-paste.ini
[keystone_authtoken]
$AUTHTOKEN
[oslo_concurrency]
lock_path = $BASE/state/glance/lock
EOF

# fake.FakeDriver reports 1000 vCPUs: room for hundreds of tiny servers (SmallFakeDriver's 2 vCPUs x
# the default cpu_allocation_ratio 4.0 allow only 8 servers of flavor 1)
cat > etc/nova/nova.conf <<EOF
[DEFAULT]
host = fakehost1
my_ip = 127.0.0.1
transport_url = rabbit://guest:guest@127.0.0.1:5672/
compute_driver = fake.FakeDriver
state_path = $BASE/state/nova
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $BASE/etc/nova/api-paste.ini
[api_database]
connection = $DB/nova_api
[database]
connection = $DB/nova
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
[oslo_concurrency]
lock_path = $BASE/state/nova/lock
[oslo_messaging_notifications]
driver = noop
[keystone_authtoken]
$AUTHTOKEN
[neutron]
$AUTHTOKEN
[placement]
$AUTHTOKEN
[glance]
$AUTHTOKEN
[cinder]
os_region_name = RegionOne
$AUTHTOKEN
[service_user]
send_service_user_token = True
$AUTHTOKEN
EOF

# Cinder: API (WSGI), scheduler, volume. The volume backend is FakeLoggingVolumeDriver from the
# wheel's cinder/tests/fake_driver.py: it logs calls and returns fake iSCSI connection info, which
# nova's fake virt driver accepts, so attach/detach/snapshot go through the real API/RPC/DB paths.
cat > etc/cinder/cinder.conf <<EOF
[DEFAULT]
host = fakehost1
my_ip = 127.0.0.1
transport_url = rabbit://guest:guest@127.0.0.1:5672/
auth_strategy = keystone
state_path = $BASE/state/cinder
api_paste_config = $BASE/etc/cinder/api-paste.ini
resource_query_filters_file = $BASE/etc/cinder/resource_filters.json
enabled_backends = fake
[database]
connection = $DB/cinder
[oslo_concurrency]
lock_path = $BASE/state/cinder/lock
[oslo_messaging_notifications]
driver = noop
[coordination]
backend_url = file://$BASE/state/cinder/lock
[keystone_authtoken]
$AUTHTOKEN
[nova]
$AUTHTOKEN
interface = public
[fake]
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
EOF

# WSGI entry points: oslo.config must not see gunicorn's argv
for app in "keystone:keystone.wsgi.api" "neutron:neutron.wsgi.api" "nova:nova.wsgi.osapi_compute" \
           "placement:placement.wsgi.api" "glance:glance.wsgi.api"; do
  n=${app%%:*}; m=${app#*:}
  printf 'import sys\nsys.argv = [sys.argv[0]]\nfrom %s import application  # noqa\n' "$m" > "etc/${n}_app.py"
done
# cinder's WSGI app parses sys.argv itself and has no config-dir env variable: hand it --config-file
printf 'import sys\nsys.argv = [sys.argv[0], "--config-file", "%s"]\nfrom cinder.wsgi.api import application  # noqa\n' \
  "$BASE/etc/cinder/cinder.conf" > etc/cinder_app.py

# Every service runs under setsid: a background job of this script is not a process-group leader, so
# setsid execs in place and $! is both the service's pid and its new process group, which down.sh
# signals as a whole (gunicorn workers, nova/cinder ServiceWrapper children).
# start_wsgi NAME PORT [ENVVAR=VALUE...]
start_wsgi() {
  local name=$1 port=$2; shift 2
  env "$@" PYTHONPATH="$BASE/etc" setsid "$PY/gunicorn" -b 127.0.0.1:$port -w 1 --threads 4 \
      --timeout 300 "${name}_app:application" > "$BASE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$BASE/pids/$name.pid"
}
# start_svc NAME COMMAND CONFIG_FILE
start_svc() {
  setsid "$PY/$2" --config-file "$3" > "logs/$1.log" 2>&1 < /dev/null &
  echo $! > "pids/$1.pid"
}
wait_http() { # URL expected_code timeout_s
  for _ in $(seq 1 $(( $3 * 4 ))); do
    [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$1")" = "$2" ] && return 0; sleep 0.25; done
  echo "timeout waiting for $1 (see $BASE/logs)"; return 1
}

# ---------------------------------------------------------------- keystone
step "keystone db_sync + bootstrap"
K="$PY/keystone-manage --config-file etc/keystone/keystone.conf"
$K db_sync > logs/keystone-manage.log 2>&1
$K fernet_setup --keystone-user root --keystone-group root >> logs/keystone-manage.log 2>&1
$K credential_setup --keystone-user root --keystone-group root >> logs/keystone-manage.log 2>&1
$K bootstrap --bootstrap-password secret --bootstrap-username admin --bootstrap-project-name admin \
  --bootstrap-role-name admin --bootstrap-service-name keystone --bootstrap-region-id RegionOne \
  --bootstrap-admin-url http://127.0.0.1:5000/v3 --bootstrap-public-url http://127.0.0.1:5000/v3 \
  --bootstrap-internal-url http://127.0.0.1:5000/v3 >> logs/keystone-manage.log 2>&1
start_wsgi keystone 5000 OS_KEYSTONE_CONFIG_DIR="$BASE/etc/keystone"

# ---------------------------------------------------------------- other db migrations (parallel-safe: separate DBs)
step "db migrations (neutron, nova, placement, glance, cinder)"
$PY/neutron-db-manage --config-file etc/neutron/neutron.conf --config-file etc/neutron/plugins/ml2/ml2_conf.ini \
  upgrade heads > logs/neutron-db-manage.log 2>&1 &
MIG1=$!
$PY/placement-manage --config-file etc/placement/placement.conf db sync > logs/placement-manage.log 2>&1
$PY/glance-manage --config-file etc/glance/glance-api.conf db_sync > logs/glance-manage.log 2>&1
$PY/cinder-manage --config-file etc/cinder/cinder.conf db sync > logs/cinder-manage.log 2>&1
NM="$PY/nova-manage --config-file etc/nova/nova.conf"
$NM api_db sync > logs/nova-manage.log 2>&1
$NM cell_v2 map_cell0 --database_connection "$DB/nova_cell0" >> logs/nova-manage.log 2>&1
$NM db sync >> logs/nova-manage.log 2>&1
$NM cell_v2 list_cells 2>/dev/null | grep -q ' cell1 ' || \
  $NM cell_v2 create_cell --name cell1 >> logs/nova-manage.log 2>&1
wait $MIG1

wait_http http://127.0.0.1:5000/v3 200 60
step "keystone: projects demo + other, users, service role, catalog"
KS=http://127.0.0.1:5000/v3
token() { # user project password
  curl -s -m 30 -D - -o /dev/null -H "Content-Type: application/json" -X POST $KS/auth/tokens -d \
  '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"'$1'","domain":{"id":"default"},"password":"'$3'"}}},"scope":{"project":{"name":"'$2'","domain":{"id":"default"}}}}}' \
  | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
}
ATOK=$(token admin admin secret)
H=(-s -m 30 -H "X-Auth-Token: $ATOK" -H "Content-Type: application/json")
ADMIN_U=$(curl "${H[@]}" "$KS/users?name=admin" | jq -r '.users[0].id')
ADMIN_P=$(curl "${H[@]}" "$KS/projects?name=admin" | jq -r '.projects[0].id')
role_id() { curl "${H[@]}" "$KS/roles?name=$1" | jq -r '.roles[0].id'; }
MEMBER_ROLE=$(role_id member)
# nova sends X-Service-Token; keystonemiddleware requires the 'service' role on it
curl "${H[@]}" -X PUT "$KS/projects/$ADMIN_P/users/$ADMIN_U/roles/$(role_id service)" -o /dev/null
# project_and_user NAME PASSWORD -> "project_id user_id"
project_and_user() {
  local p u
  p=$(curl "${H[@]}" -X POST $KS/projects -d '{"project":{"name":"'$1'","domain_id":"default"}}' | jq -r .project.id)
  u=$(curl "${H[@]}" -X POST $KS/users -d '{"user":{"name":"'$1'","domain_id":"default","password":"'$2'","default_project_id":"'$p'"}}' | jq -r .user.id)
  curl "${H[@]}" -X PUT "$KS/projects/$p/users/$u/roles/$MEMBER_ROLE" -o /dev/null
  echo "$p $u"
}
read -r P U < <(project_and_user demo demopass)
read -r OTHER_P OTHER_U < <(project_and_user other otherpass)
# block-storage is the official type; keystoneauth/openstacksdk/nova match the volumev3 alias to it.
# %(project_id)s is substituted by keystone in each token's catalog (works with every cinder client).
for svc in "neutron network http://127.0.0.1:9696" "nova compute http://127.0.0.1:8774/v2.1" \
           "placement placement http://127.0.0.1:8778" "glance image http://127.0.0.1:9292" \
           "cinderv3 block-storage http://127.0.0.1:8776/v3/%(project_id)s"; do
  set -- $svc
  SID=$(curl "${H[@]}" -X POST $KS/services -d '{"service":{"name":"'$1'","type":"'$2'"}}' | jq -r .service.id)
  for i in public internal admin; do
    curl "${H[@]}" -X POST $KS/endpoints -d '{"endpoint":{"service_id":"'$SID'","interface":"'$i'","region_id":"RegionOne","url":"'$3'"}}' -o /dev/null
  done
done
# An application credential of demo (restricted to demo's roles on project demo): the janitor's other
# Keystone auth method. Created with demo's own token, as a user would.
DTOK=$(token demo demo demopass)
APPCRED_SECRET=e2e-appcred-secret
APPCRED_ID=$(curl -s -m 30 -H "X-Auth-Token: $DTOK" -H "Content-Type: application/json" -X POST \
  "$KS/users/$U/application_credentials" \
  -d '{"application_credential":{"name":"cloud-janitor-e2e","secret":"'$APPCRED_SECRET'"}}' | jq -r .application_credential.id)

# nova/neutron look up placement/glance/neutron in the catalog: services start after it exists
step "start neutron, placement, glance, nova-api, conductor, scheduler, compute, cinder"
start_wsgi neutron 9696 OS_NEUTRON_CONFIG_DIR="$BASE/etc/neutron"
start_wsgi placement 8778 OS_PLACEMENT_CONFIG_DIR="$BASE/etc/placement"
start_wsgi glance 9292 OS_GLANCE_CONFIG_DIR="$BASE/etc/glance"
start_wsgi nova 8774 OS_NOVA_CONFIG_DIR="$BASE/etc/nova"
start_svc nova-conductor nova-conductor etc/nova/nova.conf
start_svc nova-scheduler nova-scheduler etc/nova/nova.conf
start_svc nova-compute nova-compute etc/nova/nova.conf
start_wsgi cinder 8776
start_svc cinder-scheduler cinder-scheduler etc/cinder/cinder.conf
start_svc cinder-volume cinder-volume etc/cinder/cinder.conf
step "wait for APIs"
wait_http http://127.0.0.1:9696/ 200 120
wait_http http://127.0.0.1:8778/ 200 120
wait_http http://127.0.0.1:9292/ 300 120
wait_http http://127.0.0.1:8774/ 200 120
wait_http http://127.0.0.1:8776/ 300 120
N=http://127.0.0.1:9696/v2.0
step "neutron: external network public (flat, physnet public, 172.24.4.0/24, no DHCP)"
PUBNET=$(curl "${H[@]}" -X POST $N/networks -d '{"network":{"name":"public","router:external":true,"provider:network_type":"flat","provider:physical_network":"public"}}' | jq -r .network.id)
curl "${H[@]}" -X POST $N/subnets -d '{"subnet":{"name":"public-subnet","network_id":"'$PUBNET'","cidr":"172.24.4.0/24","ip_version":4,"enable_dhcp":false,"gateway_ip":"172.24.4.1","allocation_pools":[{"start":"172.24.4.10","end":"172.24.4.250"}]}}' | jq -e .subnet.id >/dev/null
echo "$PUBNET" > state/public-net.id
step "neutron: network shared (owned by project other, shared with all projects, 10.250.0.0/24)"
SHNET=$(curl "${H[@]}" -X POST $N/networks -d '{"network":{"name":"shared","shared":true,"project_id":"'$OTHER_P'"}}' | jq -r .network.id)
SHSUB=$(curl "${H[@]}" -X POST $N/subnets -d '{"subnet":{"name":"shared-subnet","network_id":"'$SHNET'","project_id":"'$OTHER_P'","cidr":"10.250.0.0/24","ip_version":4}}' | jq -r .subnet.id)
step "quotas: unlimited for demo and other (neutron, nova, cinder)"
for proj in $P $OTHER_P; do
  curl "${H[@]}" -X PUT "$N/quotas/$proj" -o /dev/null -d '{"quota":{"network":-1,"subnet":-1,"port":-1,"router":-1,"floatingip":-1,"security_group":-1,"security_group_rule":-1}}'
  curl "${H[@]}" -X PUT "http://127.0.0.1:8774/v2.1/os-quota-sets/$proj" -o /dev/null -d '{"quota_set":{"instances":-1,"cores":-1,"ram":-1,"key_pairs":-1,"server_groups":-1,"server_group_members":-1}}'
  curl "${H[@]}" -X PUT "http://127.0.0.1:8776/v3/$ADMIN_P/os-quota-sets/$proj" -o /dev/null -d '{"quota_set":{"volumes":-1,"gigabytes":-1,"snapshots":-1}}'
done
step "nova: wait for compute service, discover hosts, flavor; glance: image"
for _ in $(seq 1 120); do
  curl "${H[@]}" "http://127.0.0.1:8774/v2.1/os-services?binary=nova-compute" | jq -e '.services[0].state=="up"' >/dev/null 2>&1 && break
  sleep 0.5
done
for _ in $(seq 1 120); do  # compute's resource provider must exist before scheduling works
  curl "${H[@]}" http://127.0.0.1:8778/resource_providers | jq -e '.resource_providers | length > 0' >/dev/null 2>&1 && break
  sleep 0.5
done
$NM cell_v2 discover_hosts >> logs/nova-manage.log 2>&1
curl "${H[@]}" -X POST http://127.0.0.1:8774/v2.1/flavors -d '{"flavor":{"name":"m1.tiny","ram":64,"vcpus":1,"disk":1,"id":"1"}}' -o /dev/null
IMG=$(curl "${H[@]}" -X POST http://127.0.0.1:9292/v2/images -d '{"name":"fake-img","disk_format":"raw","container_format":"bare","visibility":"public"}' | jq -r .id)
head -c 1024 /dev/zero | curl -s -m 30 -H "X-Auth-Token: $ATOK" -H "Content-Type: application/octet-stream" \
  -X PUT "http://127.0.0.1:9292/v2/images/$IMG/file" --data-binary @- -o /dev/null
echo "$IMG" > state/image.id
step "cinder: wait for cinder-volume service"
for _ in $(seq 1 120); do
  curl "${H[@]}" "http://127.0.0.1:8776/v3/$ADMIN_P/os-services?binary=cinder-volume" | jq -e '.services[0].state=="up"' >/dev/null 2>&1 && break
  sleep 0.5
done
curl "${H[@]}" "http://127.0.0.1:8776/v3/$ADMIN_P/os-services?binary=cinder-volume" | jq -e '.services[0].state=="up"' >/dev/null \
  || { echo "cinder-volume is not up: see $BASE/logs/cinder-volume.log"; exit 1; }

cat > state/clouds.yaml <<EOF
# Written by tests/real-openstack/up.sh for the end-to-end tests.
clouds:
  demo:
    auth: {auth_url: http://127.0.0.1:5000/v3, username: demo, password: demopass, project_name: demo, user_domain_id: default, project_domain_id: default}
    region_name: RegionOne
  demo-appcred:
    auth_type: v3applicationcredential
    auth: {auth_url: http://127.0.0.1:5000/v3, application_credential_id: $APPCRED_ID, application_credential_secret: $APPCRED_SECRET}
    region_name: RegionOne
  other:
    auth: {auth_url: http://127.0.0.1:5000/v3, username: other, password: otherpass, project_name: other, user_domain_id: default, project_domain_id: default}
    region_name: RegionOne
  admin:
    auth: {auth_url: http://127.0.0.1:5000/v3, username: admin, password: secret, project_name: admin, user_domain_id: default, project_domain_id: default}
    region_name: RegionOne
EOF
jq -n --arg demo_project "$P" --arg demo_user "$U" --arg other_project "$OTHER_P" --arg other_user "$OTHER_U" \
  --arg admin_project "$ADMIN_P" --arg image "$IMG" --arg public_network "$PUBNET" \
  --arg shared_network "$SHNET" --arg shared_subnet "$SHSUB" --arg appcred "$APPCRED_ID" \
  '{demo_project: $demo_project, demo_user: $demo_user, other_project: $other_project,
    other_user: $other_user, admin_project: $admin_project, image: $image, flavor: "1",
    public_network: $public_network, shared_network: $shared_network, shared_subnet: $shared_subnet,
    demo_application_credential: $appcred}' > state/stack.json
date -u +%FT%TZ > state/ready
step "ready: $BASE/state/clouds.yaml (image $IMG, flavor 1, external network $PUBNET, shared network $SHNET)"
