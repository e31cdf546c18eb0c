"""Security groups, least privilege (the guide's "security-group rules reviewed"): every group
declares its egress (otherwise EC2 adds allow-all), and 0.0.0.0/0 (or ::/0) appears only in the
load balancer's ingress, on its listeners' ports 80 and 443."""

from cfn import stacks, walk

OPEN = ("0.0.0.0/0", "::/0")


def main():
    errors = []
    groups = 0
    for _, stack, template in stacks():
        for name, res in template.get("Resources", {}).items():
            props = res.get("Properties", {})
            if res["Type"] == "AWS::EC2::SecurityGroup":
                groups += 1
                if "SecurityGroupEgress" not in props:
                    errors.append(f"{stack}: {name} declares no SecurityGroupEgress, so EC2 allows all egress")
            for path, node in walk(props):
                if not (isinstance(node, dict) and (node.get("CidrIp") in OPEN or node.get("CidrIpv6") in OPEN)):
                    continue
                listener = (res["Type"] == "AWS::EC2::SecurityGroup" and name == "LoadBalancerSecurityGroup"
                            and path[:1] == ("SecurityGroupIngress",)
                            and (node.get("FromPort"), node.get("ToPort")) in ((80, 80), (443, 443)))
                if not listener:
                    where = "/".join(map(str, (name,) + path))
                    errors.append(f"{stack}: {where} opens {node.get('CidrIp') or node.get('CidrIpv6')} "
                                  "(only the load balancer's listeners may)")
    for e in errors:
        print(f"FAIL: {e}")
    if errors:
        raise SystemExit(1)
    print(f"ok: {groups} security groups, each with its egress declared; 0.0.0.0/0 only on the load balancer's 80 and 443")


if __name__ == "__main__":
    main()
