//! A kubeconfig for kubectl: one cluster (plain HTTP), one context, no
//! credentials (the emulator does no authentication).

pub fn render(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-emulator
  cluster:
    server: {server}
contexts:
- name: kube-emulator
  context:
    cluster: kube-emulator
    user: kube-emulator
    namespace: default
current-context: kube-emulator
users:
- name: kube-emulator
  user: {{}}
preferences: {{}}
"
    )
}
