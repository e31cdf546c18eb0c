"""Port 8001 everywhere (the guide's failure 4): the service's declared default PORT, the
Dockerfile's EXPOSE, the compose service, the task definition (container port, the service's
load balancer entry, PORT), the target group (port and health check) and the security group
rules between the load balancer and the tasks all name the same port."""

import re

import yaml

from cfn import ROOT, container, declared_settings, stack


def ref_to(node, logical_id):
    return node == {"Fn::GetAtt": [logical_id, "GroupId"]} or node == {"Ref": logical_id}


def main():
    want = int(declared_settings()["PORT"]["default"])
    seen = []  # (where, port)

    stages = re.split(r"(?im)^FROM\s", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    exposed = re.findall(r"(?im)^EXPOSE\s+(\d+)", stages[-1])
    seen += [("Dockerfile EXPOSE (runtime stage)", int(p)) for p in exposed] or [("Dockerfile EXPOSE (missing)", None)]

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    service = compose["services"]["aidlc-auth"]
    for mapping in service.get("ports", []):
        seen.append(("docker-compose.yml ports (container side)", int(str(mapping).rsplit(":", 1)[-1].split("/")[0])))
    if "PORT" in service.get("environment", {}):
        seen.append(("docker-compose.yml PORT", int(service["environment"]["PORT"])))

    service_stack = stack("07-service")
    c = container(service_stack)
    seen += [("07-service container PortMappings", int(m["ContainerPort"])) for m in c["PortMappings"]]
    seen += [("07-service task Environment PORT", int(e["Value"])) for e in c.get("Environment", []) if e["Name"] == "PORT"]
    seen += [("07-service Service LoadBalancers ContainerPort", int(lb["ContainerPort"]))
             for lb in service_stack["Resources"]["Service"]["Properties"]["LoadBalancers"]]

    edge = stack("02-security-groups")["Resources"]
    tg = edge["TargetGroup"]["Properties"]
    seen.append(("02 TargetGroup Port", int(tg["Port"])))
    seen.append(("02 TargetGroup HealthCheckPort", int(tg.get("HealthCheckPort", tg["Port"]))))
    rules = 0
    for name, res in edge.items():
        p = res.get("Properties", {})
        into_app = res["Type"] == "AWS::EC2::SecurityGroupIngress" and ref_to(p.get("GroupId"), "AppSecurityGroup")
        lb_to_app = res["Type"] == "AWS::EC2::SecurityGroupEgress" and ref_to(p.get("GroupId"), "LoadBalancerSecurityGroup")
        if into_app or lb_to_app:
            rules += 1
            seen.append((f"02 {name} FromPort", int(p["FromPort"])))
            seen.append((f"02 {name} ToPort", int(p["ToPort"])))
    if rules < 2:
        seen.append(("02 security group rules load balancer -> tasks (fewer than two found)", None))

    wrong = [(w, p) for w, p in seen if p != want]
    for where, port in wrong:
        print(f"FAIL: {where} is {port}, the service listens on {want} (src/config/mod.rs PORT default)")
    if wrong:
        raise SystemExit(1)
    print(f"ok: port {want} in all {len(seen)} places")


if __name__ == "__main__":
    main()
