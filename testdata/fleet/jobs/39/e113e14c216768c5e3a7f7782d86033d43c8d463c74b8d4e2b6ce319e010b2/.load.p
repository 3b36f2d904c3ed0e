‰£cmd§publish£tgt‘¦f-down£fun±saltutil.find_job£arg‘´20261203103640573301¨tgt_type¤list£ret £jid´20261203103650836408¦kwargs‚²gather_job_timeout
®yield_pub_dataÃ¤user¤root