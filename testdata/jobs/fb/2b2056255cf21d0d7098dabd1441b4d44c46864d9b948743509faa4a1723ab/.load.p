‰£cmd§publish£tgt¤web1£fun²state.template_str£arg‘ÙCtmpl-ok:
  test.succeed_with_changes:
    - name: from template_str¨tgt_type¤glob£ret £jid´20261201150402623891¦kwargsƒ¬show_timeoutÃ¨show_jidÂ©delimiter¡:¤user¤root